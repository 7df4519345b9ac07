"""Exactly-once: the runner is killed with SIGKILL at random points while events keep
arriving, and restarted; at the end, the alerts visible to read_committed consumers are
exactly those of a backtest over the same events, none missing, none twice."""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from kafka_runner_helpers import (
    BASE_TS,
    MINUTE,
    RunnerProcess,
    RunnerThread,
    alert_ids,
    committed_offsets,
    end_offsets,
    produce,
    read_topic,
    settings_of,
    wait_for,
    workload,
    write_config,
)

from service.kafka.engine_factory import engine_from_settings

pytestmark = pytest.mark.kafka

PARTITIONS = 2


def partition_of(ev: dict[str, Any]) -> int:
    """Co-partitioning: every event of a card or an order goes to one partition."""
    key = ev.get("card_id") or ev.get("order_id") or ""
    return sum(key.encode()) % PARTITIONS


def test_kill_9_at_random_points_gives_exactly_the_backtest_alerts(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    seed = int(time.time()) % 10_000
    rng = random.Random(seed)
    topic = topic_factory(partitions=PARTITIONS)
    tag = topic.rsplit("-", 1)[-1]
    cfg = write_config(
        tmp_path, kafka_bootstrap, topic, exactly_once=True, checkpoint="150ms",
        # static membership: a restarted process takes its predecessor's place at once
        consumer={"group.instance.id": f"cep-{tag}", "session.timeout.ms": "10000"},
    )
    s = settings_of(cfg)
    events = workload(16_000)
    events += [{"id": f"end-{p}", "ts": events[-1]["ts"] + 60 * MINUTE, "type": "end",
                "card_id": next(f"end{i}" for i in range(100)
                                if sum(f"end{i}".encode()) % PARTITIONS == p)}
               for p in range(PARTITIONS)]

    def feed() -> None:  # ~8 s of input, while the runner dies and comes back
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5,
                      "enable.idempotence": True})
        for i, ev in enumerate(events):
            p.produce(topic, orjson.dumps(ev), partition=partition_of(ev))
            if i % 200 == 199:
                p.poll(0)
                time.sleep(0.1)
        assert p.flush(60) == 0

    feeder = threading.Thread(target=feed, daemon=True)
    runner = RunnerProcess(cfg, tmp_path / "runner.log")
    runner.start()
    feeder.start()
    kills = 0
    try:
        # two kills while processing (after the restore), one during start-up
        for when in ("running", "running", "starting"):
            if when == "running":
                n = kills + 1
                wait_for(lambda n=n: runner.log_text().count("state restored") >= n, 60,
                         what="the runner to restore its state")
                time.sleep(rng.uniform(0.2, 2.0))
            else:
                time.sleep(rng.uniform(0.0, 1.5))
            assert runner.alive(), runner.log_text()[-3000:]
            runner.kill()
            kills += 1
            runner.start()
        runner.wait_ready()
        feeder.join(60)
        ends = end_offsets(kafka_bootstrap, topic, PARTITIONS)
        assert sum(ends) == len(events)
        wait_for(lambda: committed_offsets(kafka_bootstrap, s.kafka.group_id, topic,
                                           PARTITIONS) == ends, 120,
                 interval=0.5, what="the runner to commit the end of the input")
        assert runner.terminate() == 0, runner.log_text()[-3000:]
    finally:
        if runner.alive():
            runner.kill()

    log = runner.log_text()
    records = read_topic(kafka_bootstrap, s.kafka.alert_topic) + read_topic(
        kafka_bootstrap, f"alerts2-{tag}")
    got = alert_ids(records)
    engine = engine_from_settings(s)
    expected = [a.record["alert_id"]
                for a in engine.process(events, stream="transactions").alerts]
    assert len(expected) > 100
    assert len(got) == len(set(got)), f"duplicates (seed {seed})"
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    assert not missing and not extra, (
        f"seed {seed}: {len(missing)} missing, {len(extra)} extra of {len(expected)}\n"
        + log[-4000:])
    assert kills == 3 and log.count("transactional producer ready") >= 3
    assert read_topic(kafka_bootstrap, s.kafka.dead_letter_topic) == []


def test_state_store_behind_or_lost_is_rebuilt_from_the_changelog(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    cfg = write_config(tmp_path, kafka_bootstrap, topic, exactly_once=True)
    s = settings_of(cfg)
    state, old = s.state_dir, tmp_path / "state-old"

    def tiny(card: str, i: int, t: int) -> dict[str, Any]:
        return {"id": f"{card}-t{i}", "ts": t, "type": "purchase", "card_id": card,
                "amount": 1.0}

    t = BASE_TS
    phase1 = [tiny("A", i, t + i * 1000) for i in range(3)]
    phase2 = [tiny("B", i, t + 10_000 + i * 1000) for i in range(3)]
    phase3 = [
        {"id": "A-big", "ts": t + 20_000, "type": "purchase", "card_id": "A", "amount": 500.0},
        {"id": "B-big", "ts": t + 21_000, "type": "purchase", "card_id": "B", "amount": 500.0},
        {"id": "next", "ts": t + 30_000, "type": "purchase", "card_id": "C", "amount": 5.0},
    ]
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, phase1)
        r.wait_consumed(topic, 3)
        r.wait_checkpointed()
    shutil.copytree(state, old)  # a copy of this store, soon one checkpoint behind
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, phase2)
        r.wait_consumed(topic, 6)
        r.wait_checkpointed()

    # 1. the store is one checkpoint behind the changelog: caught up, not rebuilt
    shutil.rmtree(state)
    shutil.copytree(old, state)
    with RunnerThread(cfg) as r:
        assert [x.mode for x in r.runner.recoveries] == ["caught_up"]
        assert r.runner.recoveries[0].records > 0
        assert r.runner.stats["records_in"] == 0
    # 2. the store is gone: rebuilt from the whole changelog
    shutil.rmtree(state)
    with RunnerThread(cfg) as r:
        assert [x.mode for x in r.runner.recoveries] == ["rebuilt"]
        produce(kafka_bootstrap, topic, phase3)
        wait_for(lambda: len(r.alerts) == 2, 20, what="both alerts")
        r.wait_checkpointed()
        assert r.runner.stats["records_in"] == 3  # resumed at the changelog's offsets
    got = alert_ids(read_topic(kafka_bootstrap, s.kafka.alert_topic))
    engine = engine_from_settings(s)
    expected = [a.record["alert_id"] for a in
                engine.process(phase1 + phase2 + phase3, stream="transactions").alerts]
    assert sorted(got) == sorted(expected) and len(expected) == 2
