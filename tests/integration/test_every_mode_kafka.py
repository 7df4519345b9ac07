"""The Kafka runner gives the alerts and dead-letter records of a backtest over the
same input (tests/service/test_every_mode.py checks the other modes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from every_mode import LINES, PATTERN, REASONS, backtest, comparable
from kafka_runner_helpers import (
    RunnerThread,
    alert_ids,
    produce,
    read_topic,
    settings_of,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.kafka


def record_of(headers: dict[str, str], value: bytes) -> dict[str, Any]:
    """A dead-letter topic record read back as `DeadLetter.to_json()`: the fields from
    the headers, the event from the original bytes (or the raw text if not JSON)."""
    rec: dict[str, Any] = {"reason": headers["cep.reason"], "detail": headers["cep.detail"],
                           "position": orjson.loads(headers["cep.position"])}
    try:
        rec["event"] = orjson.loads(value)
    except orjson.JSONDecodeError:
        rec["raw"] = value.decode()
    return rec


def test_kafka_runner_agrees_with_the_backtest(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    alerts, dead = backtest(tmp_path / "bt")
    topic = topic_factory(partitions=1)
    cfg = write_config(tmp_path / "kafka", kafka_bootstrap, topic, patterns=PATTERN)
    s = settings_of(cfg)
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, LINES)
        r.wait_consumed(topic, len(LINES))
        wait_for(lambda: len(r.alerts) >= len(alerts), 20, what="the alerts")
        r.wait_checkpointed()
    got = read_topic(kafka_bootstrap, s.kafka.alert_topic)
    assert alert_ids(got) == [a["alert_id"] for a in alerts]
    dlq = read_topic(kafka_bootstrap, s.kafka.dead_letter_topic)
    records = [record_of(d.headers, d.value) for d in dlq]
    assert [x["reason"] for x in records] == REASONS
    assert [comparable(x) for x in records] == [comparable(x) for x in dead]
    # positions: (topic, partition, offset); offsets count from 0, file lines from 1
    assert [x["position"] for x in records] == [[topic, 0, n] for n in (1, 2, 3, 4, 5)]
