"""Repartitioning without a broker (docs/scale-out.md, "Repartitioning"): which patterns
need a hop, the hop's name, key and partition, and the engine's routing of a batch to
the patterns of its path (`Batch.route`). The broker tests: tests/integration/
test_repartition.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.runtime.engine import Engine, EngineConfig
from cep.runtime.records import Batch, DeadLetter, KeyRoute
from cep.state.store import MemoryStore
from service.config import KafkaConfig, Settings, StreamConfig
from service.kafka.checkpoint import TaskCut
from service.kafka.io import PartitionBatch, consumer_config, decode
from service.kafka.repartition import (
    Forwarder,
    SourceMarks,
    by_source,
    declared_key,
    forwarded_from,
    key_bytes,
    partition_for,
    plan_repartitions,
    topic_name,
)
from service.kafka.stall import StallCheck
from service.kafka.watchdog import Progress

SRC = """
pattern by_card {
  from tx
  key card
  match a where amount < 2 then b where amount > 100
  emit { card = key }
}
pattern by_account {
  from tx
  key account
  match a where amount < 2 then b where amount > 100
  emit { account = key }
}
pattern global_big {
  from tx
  match b where amount > 1000
  emit { }
}
"""
T0 = 1_700_000_000_000
ACCOUNT = (("account",),)
CARD = (("card",),)


def engine(*names: str) -> Engine:
    """The patterns of SRC (those named, when names are given)."""
    plans = [compile_pattern(p) for p in load_source(SRC)]
    return Engine([p for p in plans if not names or p.name in names], EngineConfig(),
                  now_ms=lambda: T0 + 3_600_000)


def settings(partition_key: Any = None, **kafka: Any) -> Settings:
    return Settings(streams={"tx": StreamConfig(topic="tx-topic", partition_key=partition_key)},
                    kafka=KafkaConfig(bootstrap_servers="localhost:1", group_id="fraud", **kafka))


def test_the_declared_key_decides_which_patterns_read_through_a_hop() -> None:
    assert plan_repartitions(settings(), engine()).hops == ()  # not declared: no hop
    plan = plan_repartitions(settings("card"), engine())
    assert [(h.stream, h.key, h.topic) for h in plan.hops] == [
        ("tx", ACCOUNT, "fraud-tx-by-account-repartition")]
    assert plan.route("tx-topic") == KeyRoute(frozenset([ACCOUNT]), through=False)
    assert plan.route("fraud-tx-by-account-repartition") == KeyRoute(frozenset([ACCOUNT]),
                                                                      through=True)
    assert plan.route("other") is None
    assert plan.stream_of("fraud-tx-by-account-repartition") == "tx"
    assert plan.direct == frozenset({"tx"})  # by_card and global_big read the topic
    # keyless producers: every keyed pattern reads through a hop
    keyless = plan_repartitions(settings(""), engine())
    assert sorted(h.key for h in keyless.hops) == [ACCOUNT, CARD]


def test_hop_names_keys_and_partitions() -> None:
    assert declared_key(None) is None
    assert declared_key("") == () and declared_key([]) == ()
    assert declared_key("user.id") == (("user", "id"),)
    assert declared_key(["a", "b"]) == (("a",), ("b",))
    assert topic_name("g", "tx", (("user", "id"),)) == "g-tx-by-user.id-repartition"
    # characters a topic cannot hold: replaced, and the exact name's hash keeps two apart
    two = topic_name("g", "tx", (("a",), ("b",)))
    assert two.startswith("g-tx-by-a_b-") and two.endswith("-repartition")
    assert two != topic_name("g", "tx", (("a_b",),)) == "g-tx-by-a_b-repartition"
    # keyed as the engine keys: 1.0 and 1 are one key; missing, null, structured: none
    assert key_bytes({"card": 1.0}, CARD) == key_bytes({"card": 1}, CARD) == b"1"
    assert key_bytes({"card": "c1"}, CARD) == b'"c1"'
    bads: list[dict[str, object]] = [{}, {"card": None}, {"card": {"x": 1}}, {"card": [1]}]
    for bad in bads:
        assert key_bytes(bad, CARD) is None
    assert key_bytes({"a": 1, "b": "x"}, (("a",), ("b",))) == orjson.dumps([1, "x"])
    # the same partition in every process, spread over the partitions
    parts = {partition_for(orjson.dumps(f"acct-{i}"), 6) for i in range(100)}
    assert parts == set(range(6))
    assert partition_for(b'"acct-1"', 6) == partition_for(b'"acct-1"', 6)


def test_a_declared_partition_key_makes_the_consumer_keep_partition_n_together() -> None:
    assert consumer_config(settings())["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer_config(settings("card"))["partition.assignment.strategy"] == "range"


def ev(i: int, amount: float, card: str, account: str) -> dict[str, Any]:
    return {"id": f"e{i}", "ts": T0 + i * 1000, "card": card, "account": account,
            "amount": amount}


def test_the_engine_routes_a_batch_to_the_patterns_of_its_path() -> None:
    """Account a1 uses cards c1 and c2 (partitions 0 and 1 of a card-keyed topic). The
    input path's batches go to by_card and global_big; the hop's (the account's
    events together) to by_account, which matches across the two cards."""
    plan = plan_repartitions(settings("card"), engine())
    p0 = [ev(0, 1, "c1", "a1")]
    p1 = [ev(1, 5000, "c2", "a1")]
    direct, hop = plan.route("tx-topic"), plan.route("fraud-tx-by-account-repartition")
    e = engine()
    for i, evs in enumerate((p0, p1)):
        e.process(Batch(evs, [("tx-topic", i, 0)], stream="tx", partition=("tx-topic", i),
                        route=direct))
    out = e.finish().alerts
    assert sorted(a.record["pattern"] for a in out) == ["global_big"]  # no by_account
    h = engine()
    h.process(Batch(p0 + p1, [("h", 0, 0), ("h", 0, 1)], stream="tx", partition=("h", 0),
                    route=hop))
    hop_out = h.finish().alerts
    assert [(a.record["pattern"], a.key) for a in hop_out] == [("by_account", "a1")]
    # without routes (one process, every other mode) each event reaches every pattern
    plain = engine()
    plain.process(p0 + p1, stream="tx")
    assert sorted(a.record["pattern"] for a in plain.finish().alerts) == [
        "by_account", "global_big"]


def test_an_event_is_judged_for_its_time_on_one_path_only() -> None:
    """A bad time: the engine refuses it on each path that has patterns for it; the
    runner reports it from the input path (patterns read the stream directly) and
    not again after the hop. Late and missing_key stay per path."""
    plan = plan_repartitions(settings("card"), engine())
    hop = "fraud-tx-by-account-repartition"
    bad = {"id": "x", "ts": "soon", "card": "c1", "account": "a1", "amount": 1}
    dead = []
    for topic in ("tx-topic", hop):
        res = engine().process(Batch([bad], [(topic, 0, 0)], stream="tx",
                                     partition=(topic, 0), route=plan.route(topic)))
        assert [d.reason for d in res.dead_letters] == ["bad_time"]
        dead += plan.judged_here(topic, res.dead_letters)
    assert [(d.reason, d.position) for d in dead] == [("bad_time", ("tx-topic", 0, 0))]
    late = DeadLetter(bad, (hop, 0, 1), "late", "")
    assert plan.judged_here(hop, [late]) == [late]
    # every pattern behind a hop (no direct path): the first hop reports
    keyless = plan_repartitions(settings(""), engine("by_card", "by_account"))
    assert keyless.direct == frozenset()
    first, second = (h.topic for h in keyless.hops)
    faulty = DeadLetter(bad, (first, 0, 0), "bad_time", "")
    assert keyless.judged_here(first, [faulty]) == [faulty]
    assert keyless.judged_here(second, [faulty]) == []


def test_a_hops_partitions_hold_the_watermark_per_source_partition() -> None:
    plan = plan_repartitions(settings("card"), engine())
    hop = "fraud-tx-by-account-repartition"
    assert plan.clock_partitions([("tx-topic", 1), (hop, 1)], 3) == [
        ("tx-topic", 1), (hop, 1, 0), (hop, 1, 1), (hop, 1, 2)]
    e = engine()
    n = e.expect_partitions("tx", plan.clock_partitions([(hop, 1)], 3), plan.route(hop))
    assert n == 3  # by_account's clock waits for the three sources
    # source 0 far ahead, source 1 behind: source 1's event is not late
    route = plan.route(hop)
    e.expect_partitions("tx", [(hop, 1, 2)], route)
    r0 = e.process(Batch([ev(100, 1, "c1", "a1")], [(hop, 1, 0)], stream="tx",
                         partition=(hop, 1, 0), route=route))
    r1 = e.process(Batch([ev(5, 1, "c2", "a1")], [(hop, 1, 1)], stream="tx",
                         partition=(hop, 1, 1), route=route))
    assert r0.dead_letters == [] and r1.dead_letters == []


@pytest.mark.parametrize("declared", ["card", None])
def test_unkeyed_patterns_and_patterns_keyed_like_the_topic_read_it_directly(
    declared: str | None,
) -> None:
    plan = plan_repartitions(settings(declared), engine())
    keys = {h.key for h in plan.hops}
    assert CARD not in keys and () not in keys


def test_source_marks_drop_records_forwarded_again_and_survive_the_store() -> None:
    """At-least-once: a replay before the hop forwards records again; after the hop
    they are dropped. The marks go to the store with the task's checkpoint and come
    back with it (a restore, another instance)."""
    hop = "fraud-tx-by-account-repartition"
    marks = SourceMarks()
    marks.load(1, MemoryStore())
    assert [marks.fresh(1, (hop, 1, 0), off) for off in (5, 6, 7)] == [True] * 3
    assert marks.fresh(1, (hop, 1, 3), 2)  # another source partition: its own mark
    store = MemoryStore()
    store.write_batch(marks.puts(1))
    assert marks.puts(1) == {}  # nothing changed since
    assert [marks.fresh(1, (hop, 1, 0), off) for off in (6, 7, 8)] == [False, False, True]
    assert marks.duplicates == 2
    again = SourceMarks()
    again.load(1, store)  # the checkpoint's marks: 7 and 2
    assert [again.fresh(1, (hop, 1, 0), off) for off in (7, 8)] == [False, True]
    assert not again.fresh(1, (hop, 1, 3), 2)
    # and through a checkpoint's cut, with the rest of the task's keys
    cut = TaskCut(1, engine(), MemoryStore(), {("tx-topic", 1): 10}, extra=again.puts(1))
    puts, _ = cut.puts()
    assert puts[SourceMarks.PREFIX + hop.encode() + b"\x001\x000"] == b"8"


def records(topic: str, partition: int, values: list[Any], headers: list[Any] | None = None
            ) -> tuple[list[Message], PartitionBatch]:
    """Kafka records (real confluent_kafka Messages, no broker) and their decoded batch."""
    msgs = [Message(topic=topic, partition=partition, offset=i, key=None,
                    value=v if isinstance(v, bytes) else orjson.dumps(v),
                    headers=None if headers is None else headers[i])
            for i, v in enumerate(values)]
    groups, errors = decode(msgs)
    assert not errors
    return msgs, groups[(topic, partition)]


def test_the_forwarder_sends_each_event_to_the_partition_of_its_pattern_key() -> None:
    plan = plan_repartitions(settings("card"), engine())
    hop = "fraud-tx-by-account-repartition"
    sent: list[tuple[str, bytes | None, bytes | None, list[Any], int]] = []
    fw = Forwarder(plan, 6, lambda *rec: sent.append(rec))
    raw_a1 = b'{"id": "e0",  "ts": 1, "card": "c1", "account": "a1"}'  # spaces kept
    _, b = records("tx-topic", 4, [raw_a1, b"not json", {"id": "e2", "ts": 2, "card": "c1"}])
    assert fw.forward("tx", b) == 2  # the malformed record is the input path's dead letter
    (t1, v1, k1, h1, p1), (t2, _v2, k2, h2, p2) = sent
    assert (t1, v1, k1, p1) == (hop, raw_a1, b'"a1"', partition_for(b'"a1"', 6))
    assert h1 == [("cep.source", b"tx-topic:4:0")]
    # no account: to the partition number it came from, no key; judged after the hop
    assert (t2, k2, p2, h2) == (hop, None, 4, [("cep.source", b"tx-topic:4:2")])
    # a hop's own batches are never forwarded again
    _, hb = records(hop, 4, [{"id": "e0", "ts": 1, "account": "a1"}])
    assert fw.forward("tx", hb) == 0 and fw.forwarded == 2


def test_a_hop_batch_is_split_per_source_partition_without_the_records_seen() -> None:
    hop = "fraud-tx-by-account-repartition"
    src = [b"tx-topic:0:7", b"tx-topic:3:1", b"tx-topic:0:8", b"tx-topic:3:1"]
    values: list[Any] = [{"id": f"e{i}", "ts": i, "account": "a1"} for i in range(4)]
    msgs, b = records(hop, 2, [*values[:2], b"[1]", *values[2:]],
                      [[("cep.source", s)] for s in src[:2]] + [None]
                      + [[("cep.source", s)] for s in src[2:]])
    marks = SourceMarks()
    parts = by_source(b, marks)
    assert [(s, [d["id"] for d in part.events]) for s, part in parts] == [
        (0, ["e0", "e2"]), (3, ["e1"])]  # e3 repeats source 3's offset 1: dropped
    assert [len(part.dead) for _, part in parts] == [1, 0]  # the malformed record
    assert sum(part.count for _, part in parts) == b.count == 5
    assert {part.last_offset for _, part in parts} == {4}  # the next offset: the batch's
    assert marks.duplicates == 1
    # the engine batches: per source partition, for the hop's patterns
    plan = plan_repartitions(settings("card"), engine())
    batches = plan.batches("tx", b, SourceMarks())
    assert [bt.partition for bt in batches] == [(hop, 2, 0), (hop, 2, 3)]
    assert all(bt.route == plan.route(hop) and bt.task == 2 for bt in batches)
    # a dead letter after the hop names the input record it was forwarded from
    assert forwarded_from(msgs[1]) == [("cep.repartition.source", b"tx-topic:3:1")]
    assert forwarded_from(msgs[2]) == []


class _Consumer:
    """A consumer whose last read record is offset 9 of a partition that ends at 11."""

    def __init__(self, position: int) -> None:
        self._position = position

    def get_watermark_offsets(self, tp: Any, cached: bool = False) -> tuple[int, int]:
        return 0, 11

    def position(self, tps: list[Any]) -> list[Any]:
        return [SimpleNamespace(offset=self._position)]


@pytest.mark.parametrize(("position", "waiting"), [(11, False), (10, True)])
def test_transaction_markers_at_the_end_of_a_hop_are_not_records_waiting(
    position: int, waiting: bool
) -> None:
    """A repartition topic is written in transactions: after its last record comes a
    commit marker that read_committed never delivers, so the next offset the runner
    stores (10) stays below the end (11). The consumer's position is past the marker:
    nothing waits (else the stall watchdog would stop an idle runner)."""
    r = SimpleNamespace(progress=Progress(60, 300), assigned={("hop", 0)},
                        positions={("hop", 0): 10}, consumed_since=0,
                        consumer=_Consumer(position), k=SimpleNamespace(stall_exit_ms=0))
    reason = StallCheck(r).waiting()
    assert (reason is not None) == waiting
