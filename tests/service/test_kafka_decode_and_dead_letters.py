"""Kafka runner, pure parts: decoding records and building dead letters (no broker)."""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import KafkaError, Message

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.runtime.engine import Alert, DeadLetter, Engine, EngineConfig
from service.kafka.dead_letters import dead_letter_record, parse_headers
from service.kafka.io import alert_key, alert_value, decode


def msg(topic: str, partition: int, offset: int, value: Any, key: bytes | None = None) -> Message:
    v = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return Message(topic=topic, partition=partition, offset=offset, key=key, value=v)


def engine(src: str) -> Engine:
    return Engine([compile_pattern(p) for p in load_source(src)], EngineConfig(),
                  now_ms=lambda: 2_000_000_000_000)


KEYED = """
pattern a { from s key card match x where v > 1 }
pattern b { from s key user, shop match x where v > 1 }
pattern c { from other match x where v > 1 }
"""


def test_decode_groups_per_partition_in_order_and_keeps_positions() -> None:
    msgs = [msg("t", 0, 10, {"a": 1}), msg("t", 1, 4, {"b": 2}), msg("t", 0, 11, {"a": 3}),
            msg("u", 0, 7, {"c": 4})]
    groups, errors = decode(msgs)
    assert errors == []
    assert list(groups) == [("t", 0), ("t", 1), ("u", 0)]
    b = groups[("t", 0)]
    assert b.events == [{"a": 1}, {"a": 3}]
    assert b.positions == [("t", 0, 10), ("t", 0, 11)]
    assert (b.first_offset, b.last_offset, b.count) == (10, 11, 2) and b.dead == []


def test_decode_makes_malformed_dead_letters_with_the_original_bytes() -> None:
    msgs = [msg("t", 0, 0, b"{nope"), msg("t", 0, 1, b"[1,2]"), msg("t", 0, 2, None),
            msg("t", 0, 3, b'"text"'), msg("t", 0, 4, b"\xff\xfe"), msg("t", 0, 5, {"ok": 1})]
    groups, _ = decode(msgs)
    b = groups[("t", 0)]
    assert b.events == [{"ok": 1}]
    assert [(d.position, d.reason) for d in b.dead] == [
        (("t", 0, i), "malformed") for i in range(5)]
    assert b.dead[0].event == b"{nope" and b.dead[2].detail == "null value"
    assert "not a JSON object but list" in b.dead[1].detail
    assert b.last_offset == 5 and b.count == 6
    assert set(b.raw([1, 3])) == {1, 3}
    other, _ = decode([msg("t", 1, 1, b"x"), *msgs])
    assert other[("t", 1)].raw([1])[1].value() == b"x"  # same offset, other partition


def test_decode_separates_consumer_errors() -> None:
    err = Message(error=KafkaError(KafkaError._TRANSPORT, "down"))
    groups, errors = decode([err, msg("t", 0, 0, {"x": 1})])
    assert [e.code() for e in errors] == [KafkaError._TRANSPORT]
    assert groups[("t", 0)].events == [{"x": 1}]


def test_alert_records_are_json_keyed_by_the_json_pattern_key() -> None:
    a = Alert(None, "card-1", {"alert_id": "x", "key": "card-1"})
    assert alert_key(a) == b'"card-1"' and orjson.loads(alert_value(a))["alert_id"] == "x"
    assert alert_key(Alert(None, ["u", 3], {})) == b'["u",3]'
    assert alert_key(Alert(None, None, {})) is None


def test_dead_letter_record_keeps_original_bytes_and_says_where_from() -> None:
    dl = DeadLetter({"ts": 1}, ("tx", 2, 41), "late", "time 1 <= watermark 5")
    rec = dead_letter_record(dl, b"k", b'{"ts": 1}', "transactions")
    assert rec.key == b"k" and rec.value == b'{"ts": 1}'
    assert parse_headers(rec.headers) == {
        "cep.reason": "late", "cep.detail": "time 1 <= watermark 5",
        "cep.position": '["tx",2,41]', "cep.source.topic": "tx",
        "cep.source.partition": "2", "cep.source.offset": "41", "cep.stream": "transactions",
    }
