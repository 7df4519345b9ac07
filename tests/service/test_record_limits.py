"""Poison records never block a partition (issue 14, item 2): size limits with their
own dead-letter reasons, truncated dead letters, a key whose state outgrew its limit
dropped with a dead letter, and the changelog topic's limit checked at start-up."""

from __future__ import annotations

import hashlib

import orjson
from confluent_kafka import Message

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.runtime.engine import Engine, EngineConfig
from cep.state.codec import state_key
from service.kafka.io import decode
from service.kafka.record_limits import (
    RecordLimits,
    check_changelog_limit,
    drop_oversized_state,
    shrink_dead_letter,
)

LIMITS = RecordLimits(max_key_bytes=16, max_event_bytes=100, max_state_bytes_per_key=2000,
                      max_dead_letter_bytes=50)


def msg(offset: int, value: bytes, key: bytes | None = None) -> Message:
    return Message(topic="t", partition=0, offset=offset, key=key, value=value)


def test_oversized_key_and_value_are_dead_letters_and_the_partition_moves_on() -> None:
    ok = orjson.dumps({"ts": 1, "k": "a"})
    big = orjson.dumps({"ts": 2, "k": "x" * 200})
    groups, errors = decode([msg(0, ok), msg(1, big), msg(2, ok, key=b"k" * 17),
                             msg(3, ok)], LIMITS)
    b = groups[("t", 0)]
    assert errors == [] and len(b.events) == 2
    assert [(d.position[2], d.reason) for d in b.dead] == [
        (1, "event_too_large"), (2, "key_too_large")]
    assert "kafka.max_event_bytes = 100" in b.dead[0].detail
    assert (b.first_offset, b.last_offset, b.count) == (0, 3, 4)


def test_a_dead_letter_over_its_limit_is_written_truncated_with_size_and_hash() -> None:
    value, key = b"v" * 10_000_000, b"k" * 40
    k2, v2, headers = shrink_dead_letter(key, value, [("cep.reason", b"event_too_large")],
                                         LIMITS)
    assert v2 == value[:50] and k2 == key[:16]
    h = dict(headers)
    assert h["cep.truncated"] == b"true"
    assert h["cep.original.size"] == b"10000000"
    assert h["cep.original.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert h["cep.original.key.size"] == b"40"
    assert shrink_dead_letter(b"k", b"small", [], LIMITS) == (b"k", b"small", [])


SRC = """
pattern many {
  from s
  key k
  within 1h
  match a where v == 1 then b{2,} where v == 2 then c where v == 3
}
"""


def test_a_key_whose_state_outgrew_its_limit_is_dropped_with_a_dead_letter() -> None:
    plan = compile_pattern(load_source(SRC)[0])
    engine = Engine([plan], EngineConfig(max_out_of_orderness_ms=0), now_ms=lambda: 0)
    evs = [{"k": "small", "v": 1, "ts": 10}, {"k": "huge", "v": 1, "ts": 11}]
    evs += [{"k": "huge", "v": 2, "ts": 12 + i, "pad": "p" * 100} for i in range(40)]
    evs += [{"k": "z", "v": 9, "ts": 100}]
    engine.process(evs)
    puts = engine.checkpoint()
    huge, small = state_key("many", 1, "huge"), state_key("many", 1, "small")
    assert len(puts[huge] or b"") > 2000 and len(puts[small] or b"") < 2000
    dropped: list[object] = []
    n = drop_oversized_state(engine, puts, 2000, dropped.append)
    assert n == 1 and puts[huge] is None and puts[small] is not None
    assert [(o.pattern, o.key) for o in dropped] == [("many", "huge")]  # type: ignore[attr-defined]
    engine.checkpointed()
    # `huge` starts afresh (its 40 buffered b's are gone: no alert from them), `small`
    # kept its partial match
    res = engine.process([{"k": "huge", "v": 3, "ts": 150},
                          {"k": "small", "v": 2, "ts": 151}, {"k": "small", "v": 2, "ts": 152},
                          {"k": "small", "v": 3, "ts": 153},
                          {"k": "huge", "v": 1, "ts": 200}, {"k": "huge", "v": 2, "ts": 201},
                          {"k": "huge", "v": 2, "ts": 202}, {"k": "huge", "v": 3, "ts": 203},
                          {"k": "z", "v": 9, "ts": 400}])
    assert [a.record["key"] for a in res.alerts] == ["small", "huge"]
    assert len(res.alerts[1].record["events"]["b"]) == 2


def test_changelog_limits_are_checked_against_the_state_limit() -> None:
    limits = RecordLimits(max_state_bytes_per_key=1_040_000)
    assert "max.message.bytes = 1048588" in (
        check_changelog_limit(1_048_588, 10_000_000, limits, "cl") or "")
    assert "message.max.bytes" in (check_changelog_limit(None, 1_000_000, limits, "cl") or "")
    assert check_changelog_limit(2_000_000, 2_000_000, limits, "cl") is None
