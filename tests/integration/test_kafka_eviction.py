"""State larger than memory on Kafka (docs/engine.md): with `max_resident_keys = 2` the
runner's task engine keeps two cards in memory and the others in the task's RocksDB
store; a restart restores from that store (most keys stay there) and the alerts are
the backtest's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kafka_runner_helpers import (
    BASE_TS,
    RunnerThread,
    alert_ids,
    produce,
    read_topic,
    settings_of,
    wait_for,
    write_config,
)

from cep.state.codec import STATE_PREFIX, TIMER_PREFIX
from cep.state.rocks import RocksStore
from service.kafka.engine_factory import engine_from_settings
from service.kafka.store import task_dir
from service.metrics import ServiceMetrics, activate

pytestmark = pytest.mark.kafka
CARDS = 12


def incidents() -> list[dict[str, Any]]:
    """Per card: four tiny purchases, then a big one (the test pattern's alert), the
    cards interleaved in time order."""
    evs = []
    for c in range(CARDS):
        for i in range(4):
            evs.append({"id": f"c{c}-tiny{i}", "ts": BASE_TS + i * 1000 + c, "type": "purchase",
                        "card_id": f"card-{c}", "amount": 1.0})
        evs.append({"id": f"c{c}-big", "ts": BASE_TS + 10_000 + c, "type": "purchase",
                    "card_id": f"card-{c}", "amount": 900.0})
    evs.sort(key=lambda e: e["ts"])
    evs.append({"id": "next", "ts": BASE_TS + 60_000, "type": "purchase", "card_id": "other",
                "amount": 20.0})
    return evs


def test_restart_with_evicted_keys_gives_the_backtest_alerts(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    cfg = write_config(tmp_path, kafka_bootstrap, topic)
    cfg.write_text("max_resident_keys = 2\n" + cfg.read_text())
    assert settings_of(cfg).max_resident_keys == 2
    events = incidents()
    first = [e for e in events if "tiny" in e["id"]]
    second = events[len(first):]
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, first)
        r.wait_consumed(topic, len(first))
        r.wait_checkpointed()
        task = r.engine.task(0)
        assert sum(p.keys for p in task.snapshot().patterns) <= 3  # 2 + one with events
        assert sum(p.stats.get("keys_evicted", 0) for p in task.snapshot().patterns) > 0
    store = RocksStore(task_dir(settings_of(cfg).state_dir, 0), read_only=True)
    try:
        assert sum(1 for _ in store.items(STATE_PREFIX)) == CARDS
        assert sum(1 for _ in store.items(TIMER_PREFIX)) >= CARDS - 1
    finally:
        store.close()

    # a new consumer group: only the state store knows where to resume and what the
    # cards hold
    cfg2 = write_config(tmp_path, kafka_bootstrap, topic, group=f"other-{topic}")
    cfg2.write_text("max_resident_keys = 2\n" + cfg2.read_text())
    metrics = ServiceMetrics()  # what `cep serve` exposes on /metrics in Kafka mode
    activate(metrics)
    try:
        with RunnerThread(cfg2) as r2:
            produce(kafka_bootstrap, topic, second)
            wait_for(lambda: len(r2.alerts) == CARDS, 30, what="every card's alert")
            r2.wait_checkpointed()
            snap = r2.engine.snapshot()  # what /metrics asks the engine loop for
            loaded = sum(p.stats.get("keys_loaded", 0) for p in snap.patterns)
            metrics.engine.snapshot = snap
            text = metrics.render().decode()
    finally:
        activate(None)
    assert loaded >= 9  # the cards the restore left in the store came back
    m = re.search(r'cep_keys_loaded_total\{pattern="card_testing",version="1"\} (\S+)', text)
    assert m is not None and float(m.group(1)) == loaded
    got = alert_ids(read_topic(kafka_bootstrap, settings_of(cfg).kafka.alert_topic))
    engine = engine_from_settings(settings_of(cfg))
    want = [a.record["alert_id"] for a in engine.process(events, stream="transactions").alerts]
    assert len(want) == CARDS
    assert sorted(got) == sorted(want)
