"""The Kafka runner against the real broker: detection end to end, dead letters,
watermarks, restarts with state, a broker restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka_runner_helpers import (
    BASE_TS,
    MINUTE,
    RunnerThread,
    alert_ids,
    committed_offsets,
    produce,
    read_topic,
    settings_of,
    wait_for,
    write_config,
)

from service.kafka.engine_factory import engine_from_settings
from service.metrics import ServiceMetrics, activate

pytestmark = pytest.mark.kafka


def card_incident(card: str, t0: int, n_tiny: int = 3, tag: str = "") -> list[dict[str, Any]]:
    evs: list[dict[str, Any]] = [
        {"id": f"{card}{tag}-tiny{i}", "ts": t0 + i * 1000, "type": "purchase", "card_id": card,
         "amount": 1.0}
        for i in range(n_tiny)
    ]
    evs.append({"id": f"{card}{tag}-big", "ts": t0 + 10_000, "type": "purchase", "card_id": card,
                "amount": 900.0})
    return evs


def end_markers(ts: int, partitions: int) -> list[tuple[int, dict[str, Any]]]:
    """One event per partition at `ts`: every partition's watermark passes what came before
    (a backtest of one stream sees the same final watermark)."""
    return [(p, {"id": f"end-{p}", "ts": ts, "type": "end", "card_id": f"end-{p}"})
            for p in range(partitions)]


def backtest_ids(cfg: Path, events: list[dict[str, Any]]) -> list[str]:
    """The same patterns over the same events in one process, no Kafka."""
    engine = engine_from_settings(settings_of(cfg))
    return [a.record["alert_id"] for a in engine.process(events, stream="transactions").alerts]


def test_detects_and_alerts_end_to_end(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    cfg = write_config(tmp_path, kafka_bootstrap, topic)
    s = settings_of(cfg)
    events = card_incident("card-1", BASE_TS)
    events += [
        {"id": "o1", "ts": BASE_TS + 20_000, "type": "order_created", "order_id": "o-1"},
        {"id": "later", "ts": BASE_TS + 20 * MINUTE, "type": "purchase", "card_id": "card-2",
         "amount": 10.0},
    ]
    metrics = ServiceMetrics()  # what `cep serve` exposes on /metrics in Kafka mode
    activate(metrics)
    try:
        with RunnerThread(cfg) as r:
            produce(kafka_bootstrap, topic, events, key_field="card_id")
            r.wait_consumed(topic, len(events))
            wait_for(lambda: len(r.alerts) >= 2, 20, what="two alerts")
            r.wait_checkpointed()
    finally:
        activate(None)
    text = metrics.render().decode()
    assert f'cep_events_in_total{{source="{topic}"}} {float(len(events))}' in text
    assert f'cep_consumer_lag{{partition="0",topic="{topic}"}} 0.0' in text
    # the console's recent events (backtests, field completion) in Kafka mode too
    assert [e["id"] for e in metrics.recent.events("transactions")] == [e["id"] for e in events]

    main = read_topic(kafka_bootstrap, s.kafka.alert_topic)
    assert len(main) == 1
    rec = main[0].json()
    assert rec["pattern"] == "card_testing" and rec["kind"] == "match"
    assert rec["key"] == "card-1" and main[0].key == b'"card-1"'  # keyed by the pattern key
    assert rec["measures"] == {"card": "card-1", "attempts": 3, "amount": 900.0}
    assert [e["id"] for e in rec["events"]["tiny"]] == ["card-1-tiny0", "card-1-tiny1",
                                                        "card-1-tiny2"]
    assert rec["window"] == {"start": BASE_TS, "end": BASE_TS + 10_000}
    assert rec["severity"] == "high" and rec["detected_at"].endswith("Z")

    # `emit to` sends the unpaid order to its own topic, when the watermark passes
    # the 15 minute deadline
    second = read_topic(kafka_bootstrap, f"alerts2-{topic.rsplit('-', 1)[-1]}")
    assert [x.json()["key"] for x in second] == ["o-1"]
    assert second[0].json()["time"] == BASE_TS + 20_000 + 15 * MINUTE
    assert sorted(alert_ids(main + second)) == sorted(backtest_ids(cfg, events))
    assert sorted(a.record["alert_id"] for a in r.alerts) == sorted(alert_ids(main + second))
    # offsets are committed to the group after the state store has them
    assert committed_offsets(kafka_bootstrap, s.kafka.group_id, topic, 1) == [len(events)]


def test_every_dead_letter_reason(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    cfg = write_config(tmp_path, kafka_bootstrap, topic)
    s = settings_of(cfg)
    now = int(time.time() * 1000)
    t = BASE_TS
    records: list[dict[str, Any] | bytes] = [
        {"id": "ok1", "ts": t + 60_000, "type": "purchase", "card_id": "c", "amount": 5.0},
        b"{not json",                                                       # malformed
        b"[1, 2, 3]",                                                       # malformed
        {"id": "nt", "type": "purchase", "card_id": "c"},                   # missing_time
        {"id": "bt", "ts": "yesterday", "type": "purchase", "card_id": "c"},  # bad_time
        {"id": "ff", "ts": now + 86_400_000, "type": "purchase", "card_id": "c"},  # future
        {"id": "late", "ts": t, "type": "purchase", "card_id": "c"},        # late
        {"id": "nokey", "ts": t + 70_000, "type": "purchase", "amount": 1.0},  # missing_key
        {"id": "ok2", "ts": t + 80_000, "type": "purchase", "card_id": "c", "amount": 5.0},
    ]
    with RunnerThread(cfg) as r:
        # lateness is judged against the watermark before a batch: ok1 goes first
        produce(kafka_bootstrap, topic, records[:1])
        r.wait_consumed(topic, 1)
        produce(kafka_bootstrap, topic, records[1:])
        r.wait_consumed(topic, len(records))
        r.wait_checkpointed()
    dlq = read_topic(kafka_bootstrap, s.kafka.dead_letter_topic)
    got = {(d.headers["cep.reason"], d.value) for d in dlq}
    raw = [x if isinstance(x, bytes) else orjson.dumps(x) for x in records]
    assert got == {
        ("malformed", raw[1]), ("malformed", raw[2]), ("missing_time", raw[3]),
        ("bad_time", raw[4]), ("future_timestamp", raw[5]), ("late", raw[6]),
        ("missing_key", raw[7]),
    }
    for d in dlq:
        assert d.headers["cep.source.topic"] == topic
        assert d.headers["cep.source.partition"] == "0"
        assert raw[int(d.headers["cep.source.offset"])] == d.value  # the original bytes
        assert d.headers["cep.stream"] == "transactions"
        assert d.headers["cep.detail"]
    assert r.runner.stats["dead_letters.late"] == 1


def test_far_future_event_does_not_move_the_watermark(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    cfg = write_config(tmp_path, kafka_bootstrap, topic)
    s = settings_of(cfg)
    far = int(time.time() * 1000) + 365 * 86_400_000
    t = BASE_TS
    events = [
        {"id": "o1", "ts": t, "type": "order_created", "order_id": "o-1"},
        {"id": "forged", "ts": far, "type": "purchase", "card_id": "x", "amount": 1.0},
        # if the forged event had moved the watermark, this payment would be late and
        # o-1 reported unpaid
        {"id": "p1", "ts": t + MINUTE, "type": "payment_received", "order_id": "o-1"},
        {"id": "o2", "ts": t + 2 * MINUTE, "type": "order_created", "order_id": "o-2"},
        {"id": "tick", "ts": t + 20 * MINUTE, "type": "purchase", "card_id": "y",
         "amount": 3.0},
    ]
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, events[:2])  # processed before the payment
        r.wait_consumed(topic, 2)
        produce(kafka_bootstrap, topic, events[2:])
        r.wait_consumed(topic, len(events))
        wait_for(lambda: r.alerts, 20, what="the unpaid alert of o-2")
        r.wait_checkpointed()
        wm = r.engine.watermark()
    assert wm == t + 20 * MINUTE - 1  # the forged time never counted
    assert [a.record["key"] for a in r.alerts] == ["o-2"]
    dlq = read_topic(kafka_bootstrap, s.kafka.dead_letter_topic)
    assert [(d.headers["cep.reason"], d.headers["cep.source.offset"]) for d in dlq] == [
        ("future_timestamp", "1")]


def test_restart_resumes_partial_matches_from_the_state_store(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    cfg = write_config(tmp_path, kafka_bootstrap, topic)
    incident = card_incident("card-7", BASE_TS, n_tiny=4)
    # the watermark passes the big purchase when a later event arrives
    incident.append({"id": "next", "ts": BASE_TS + 20_000, "type": "purchase",
                     "card_id": "card-8", "amount": 20.0})
    first, second = incident[:4], incident[4:]
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, first)
        r.wait_consumed(topic, len(first))
        r.wait_checkpointed()
        assert r.alerts == []
        assert sum(p.live_runs for p in r.engine.snapshot().patterns) > 0

    # a new consumer group: nothing committed there, so only the state store's offsets
    # can tell where to resume (re-reading the tiny purchases would change the match)
    cfg2 = write_config(tmp_path, kafka_bootstrap, topic, group=f"other-{topic}")
    with RunnerThread(cfg2) as r2:
        stats = r2.runner.stats
        assert r2.engine.watermark() == BASE_TS + 3000 - 1
        produce(kafka_bootstrap, topic, second)
        wait_for(lambda: r2.alerts, 20, what="the alert completing after the restart")
        r2.wait_checkpointed()
    assert stats["records_in"] == 2
    rec = r2.alerts[0].record
    assert [e["id"] for e in rec["events"]["tiny"]] == [f"card-7-tiny{i}" for i in range(4)]
    assert alert_ids(read_topic(kafka_bootstrap, settings_of(cfg).kafka.alert_topic)) == [
        rec["alert_id"]] == backtest_ids(cfg, incident)


def test_broker_restart_mid_run_is_survived(
    restartable_broker: Any, kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    cfg = write_config(tmp_path, kafka_bootstrap, topic, consumer={
        "reconnect.backoff.max.ms": "1000"})
    s = settings_of(cfg)
    events: list[dict[str, Any]] = []
    for i in range(20):
        events += card_incident(f"card-{i}", BASE_TS + i * 60_000)
    half = len(events) // 2
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, events[:half], key_field="card_id", partitions=2)
        r.wait_consumed(topic, half)
        down = restartable_broker.restart()
        produce(kafka_bootstrap, topic, events[half:], key_field="card_id", partitions=2)
        for p, ev in end_markers(BASE_TS + 60 * MINUTE, 2):
            produce(kafka_bootstrap, topic, [ev], partition=p)
            events.append(ev)
        r.wait_consumed(topic, len(events), timeout=90)
        expected = set(backtest_ids(cfg, events))
        assert len(expected) == 20
        wait_for(lambda: {a.record["alert_id"] for a in r.alerts} >= expected, 60,
                 what="every alert")
        r.wait_checkpointed(60)
    got = alert_ids(read_topic(kafka_bootstrap, s.kafka.alert_topic))
    # at-least-once: every alert is there; a duplicate would carry the same alert_id
    assert set(got) == expected, f"broker was down {down:.1f}s"
