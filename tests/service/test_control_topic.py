"""The control topic's records and the rule that decides versions (docs/scale-out.md,
"Hot-load across instances"); the Kafka side is in tests/integration/test_hotload_kafka.py."""

from __future__ import annotations

import pytest

from service.config import Settings
from service.kafka.control_topic import (
    ControlLog,
    ControlRecord,
    ControlRecordError,
    advances,
    control_topic,
    decode,
    encode,
    final_states,
    max_record_bytes,
    new_record,
)


def put(name: str, version: int, who: str, source: str = "") -> ControlRecord:
    return new_record("pattern", name, "put", version, who, source=source or f"{name} v{version}")


def delete(name: str, version: int, who: str) -> ControlRecord:
    return new_record("pattern", name, "delete", version, who)


def compact(records: list[ControlRecord]) -> list[ControlRecord]:
    """What log compaction may leave: the last record of each key, in offset order."""
    last = {r.key: i for i, r in enumerate(records)}
    return [r for i, r in enumerate(records) if last[r.key] == i]


def test_records_round_trip_with_model_bytes() -> None:
    p = put("p", 3, "a", "pattern p { }")
    assert decode(encode(p)) == p
    blob = bytes(range(256)) * 10
    m = new_record("model", "m", "put", 2, "b", manifest=b'{"name": "m"}', model=blob)
    back = decode(encode(m))
    assert back.model == blob and back.manifest == b'{"name": "m"}' and back == m
    d = delete("p", 3, "a")
    assert decode(encode(d)) == d and d.deleted
    assert p.key == b"pattern/p/a" and m.key == b"model/m/b"


@pytest.mark.parametrize("value, why", [
    (None, "tombstone"),
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"kind": "pattern", "name": "p", "op": "put"}', "no field"),
    (b'{"kind": "job", "name": "p", "op": "put", "version": 1, "instance": "a", '
     b'"request": "r"}', "unknown kind"),
    (b'{"kind": "pattern", "name": "p", "op": "put", "version": 1, "instance": "a", '
     b'"request": "r"}', "without its source"),
    (b'{"kind": "model", "name": "m", "op": "put", "version": 1, "instance": "a", '
     b'"request": "r", "manifest": "{}", "model_b64": "***"}', "not base64"),
])
def test_unreadable_records_are_refused_with_the_reason(value: bytes | None, why: str) -> None:
    with pytest.raises(ControlRecordError, match=why):
        decode(value)


def test_the_first_record_to_reach_a_version_wins() -> None:
    # a and b both saw version 3 and proposed version 4; a's record came first
    a4, b4 = put("p", 4, "a", "A"), put("p", 4, "b", "B")
    assert advances(a4, (3, False))
    assert not advances(b4, (4, False))  # b's is refused; b proposes again:
    b5 = put("p", 5, "b", "B")
    assert advances(b5, (4, False))
    assert final_states([a4, b4])[("pattern", "p")].source == "A"
    assert final_states([a4, b4, b5])[("pattern", "p")].source == "B"


def test_a_delete_removes_the_version_it_names_and_the_next_put_continues_the_count() -> None:
    assert advances(delete("p", 4, "a"), (4, False))
    assert not advances(delete("p", 4, "b"), (4, True))  # deleted already
    assert not advances(delete("p", 3, "b"), (4, False))  # version 4 came meanwhile
    assert advances(put("p", 5, "a"), (4, True))
    assert not advances(put("p", 4, "a"), (4, True))  # a version number is never reused


def test_compaction_never_changes_what_a_new_instance_reads() -> None:
    """Every interleaving of two writers' proposals: the final state a new instance
    computes from the compacted topic is the running instances' (the uncompacted)."""
    histories = [
        [put("p", 1, "a", "A1"), put("p", 1, "b", "B1")],
        [put("p", 2, "a", "A"), put("p", 2, "b", "B"), put("p", 3, "a", "A3")],
        [put("p", 2, "a", "A"), put("p", 2, "b", "B"), delete("p", 2, "a")],
        [put("p", 2, "a", "A"), delete("p", 1, "b"), put("p", 3, "a", "A3"),
         delete("p", 3, "a")],
        [put("p", 2, "a", "A"), delete("p", 2, "b"), put("p", 3, "a", "A3")],
        [delete("p", 1, "a"), put("p", 2, "b", "B"), put("p", 2, "a", "A"),
         put("p", 3, "a", "A3")],
    ]
    for records in histories:
        full, compacted = final_states(records), final_states(compact(records))
        assert {k: (r.state, r.source) for k, r in full.items()} == {
            k: (r.state, r.source) for k, r in compacted.items()}, records


def test_the_topic_is_named_from_the_group_and_takes_the_largest_upload() -> None:
    s = Settings.model_validate({"kafka": {"group_id": "fraud"},
                                 "api": {"max_body_bytes": 3_000_000}})
    assert control_topic(s) == "fraud.control"
    assert max_record_bytes(s) >= 3_000_000 * 4 // 3


@pytest.mark.parametrize("max_body", [10 * 1024 * 1024, 60 * 1024 * 1024])
def test_the_reader_and_writer_take_the_largest_record(max_body: int) -> None:
    """librdkafka accepts both configurations (it checks them when the client is
    created; no broker is contacted)."""
    from confluent_kafka import Consumer, Producer

    s = Settings.model_validate({"kafka": {"bootstrap_servers": "127.0.0.1:1"},
                                 "api": {"max_body_bytes": max_body}})
    log = ControlLog(s)
    reader, writer = log.reader_config(), log.writer_config()
    assert reader["fetch.message.max.bytes"] >= max_record_bytes(s)
    assert writer["message.max.bytes"] >= max_record_bytes(s)
    Consumer(reader).close()
    Producer(writer).flush(0)
