"""A declared stream (schema + epoch seconds) in Kafka mode: the dead-letter topic gets
the same `schema` and `bad_time` records (reason and detail headers) as a backtest of
the same input, and the same alerts come out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka_runner_helpers import (
    RunnerThread,
    alert_ids,
    produce,
    read_topic,
    settings_of,
    wait_for,
    write_config,
)
from stream_decl import LINES, PATTERN, REASONS, backtest

pytestmark = pytest.mark.kafka


def test_kafka_runner_applies_the_stream_declaration(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    alerts, dead = backtest(tmp_path / "bt")
    assert [(d["reason"], d["detail"]) for d in dead] == REASONS
    topic = topic_factory(partitions=1)
    cfg = write_config(tmp_path / "kafka", kafka_bootstrap, topic, patterns=PATTERN)
    text = cfg.read_text()
    assert 'max_future_skew_ms = "1h"\n' in text
    cfg.write_text(text.replace(
        'max_future_skew_ms = "1h"\n',
        'max_future_skew_ms = "1h"\ntime_unit = "s"\nfields = { card_id = "string", '
        'type = "string", amount = "number", ts = "integer", id = "string" }\n'))
    s = settings_of(cfg)
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, LINES)
        r.wait_consumed(topic, len(LINES))
        wait_for(lambda: len(r.alerts) >= len(alerts), 20, what="the alerts")
        r.wait_checkpointed()
    got = read_topic(kafka_bootstrap, s.kafka.alert_topic)
    assert alert_ids(got) == [a["alert_id"] for a in alerts]
    dlq = read_topic(kafka_bootstrap, s.kafka.dead_letter_topic)
    assert [(d.headers["cep.reason"], d.headers["cep.detail"]) for d in dlq] == REASONS
    assert [d.value for d in dlq] == [LINES[1], LINES[2], LINES[3]]  # the original bytes
