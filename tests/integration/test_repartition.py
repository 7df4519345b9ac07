"""Repartition topics (docs/scale-out.md, "Repartitioning") against the real broker.

The input topic (6 partitions) is partitioned by `card_id`; `account_burst` is keyed by
`account`, which spreads over the cards (so over the partitions), and `unpaid_order` by
`order_id`. With `partition_key = "card_id"` declared, both read through repartition
topics, `card_testing` reads the input directly; the alerts are a backtest's. Without
the declaration, an account's events are matched per partition and alerts are missing
(what the hop is for)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka_runner_helpers import (
    MINUTE,
    PATTERNS,
    RunnerThread,
    alert_ids,
    committed_offsets,
    end_offsets,
    read_topic,
    settings_of,
    wait_for,
    workload,
    write_config,
)
from scale_out_helpers import PARTITIONS, Instance, covered, partition_of

from service.kafka.engine_factory import engine_from_settings
from service.kafka.repartition import partition_for, topic_name

pytestmark = pytest.mark.kafka

ACCOUNT_PATTERN = """
pattern account_burst {
  from transactions
  key account
  within 10m
  match
    small{2,} where type == "purchase" and amount < 2.00
    then big where type == "purchase" and amount > 100
  emit { account = key, small = count(small) }
}
"""


def accounts(events: list[dict[str, Any]], seed: int = 5) -> list[dict[str, Any]]:
    """Give every purchase an `account`: 6 accounts, each with cards in several
    partitions (the input is partitioned by card_id)."""
    rng = random.Random(seed)
    for ev in events:
        if "card_id" in ev:
            ev["account"] = f"acct-{rng.randrange(6)}"
    return events


def end_markers(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An hour after the input, one event per (input partition, repartition topic
    partition): every source partition of every hop partition (each holds its hop's
    watermark back) and every input partition moves past the input."""
    ts = events[-1]["ts"] + 60 * MINUTE

    def hashing_to(q: int, prefix: str) -> str:
        return next(f"{prefix}{i}" for i in range(1000)
                    if partition_for(orjson.dumps(f"{prefix}{i}"), PARTITIONS) == q)

    def card_in(p: int) -> str:
        return next(f"end{i}" for i in range(200) if sum(f"end{i}".encode()) % PARTITIONS == p)

    return [{"id": f"end-{p}-{q}", "ts": ts, "type": "end", "card_id": card_in(p),
             "account": hashing_to(q, "end-acct-"), "order_id": hashing_to(q, "end-order-")}
            for p in range(PARTITIONS) for q in range(PARTITIONS)]


def configure(cfg: Path, *, declared: bool) -> None:
    """The account pattern next to the helpers' two, and the topic's partition key."""
    pdir = cfg.parent / "patterns"
    text = (pdir / "test.cep").read_text()
    (pdir / "test.cep").write_text(text + ACCOUNT_PATTERN)
    if declared:
        cfg.write_text(cfg.read_text().replace('time_field = "ts"\n',
                                               'time_field = "ts"\npartition_key = "card_id"\n', 1))


def feed(bootstrap: str, topic: str, events: list[dict[str, Any]], pause: float = 0.0,
         every: int = 300) -> None:
    """Produce in order, by card_id (order_id) as test_scale_out does; `pause` seconds
    after every `every` events."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for i, ev in enumerate(events):
        p.produce(topic, orjson.dumps(ev), key=None, partition=partition_of(ev))
        if i % every == every - 1:
            p.poll(0)
            if pause:
                time.sleep(pause)
    assert p.flush(60) == 0


def backtest_ids(cfg: Path, events: list[dict[str, Any]]) -> set[str]:
    s = settings_of(cfg)
    return {a.record["alert_id"]
            for a in engine_from_settings(s).process(events, stream="transactions").alerts}


def alerts_of(bootstrap: str, topic: str) -> list[str]:
    tag = topic.rsplit("-", 1)[-1]
    return alert_ids(read_topic(bootstrap, f"alerts-{tag}")
                     + read_topic(bootstrap, f"alerts2-{tag}"))


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "not-declared"])
def test_a_pattern_keyed_otherwise_than_its_topic_needs_the_repartition_topic(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, declared: bool
) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    cfg = write_config(tmp_path, kafka_bootstrap, topic, exactly_once=True,
                       checkpoint="200ms", patterns=PATTERNS)
    configure(cfg, declared=declared)
    events = accounts(workload(3000, seed=3))
    bad = {"id": "bad-ts", "ts": "soon", "type": "purchase", "card_id": "card-1",
           "account": "acct-1", "amount": 1.0}
    events.insert(100, bad)
    # no card, no account: card_testing (direct) and account_burst (after its hop)
    # would both start on it and no pattern can key it: missing_key on each path
    keyless = {"id": "no-key", "ts": events[200]["ts"], "type": "purchase", "amount": 1.0}
    events.insert(201, keyless)
    markers = end_markers([e for e in events if isinstance(e["ts"], int)])
    feed(kafka_bootstrap, topic, events + markers)
    s = settings_of(cfg)
    hops = {topic_name(s.kafka.group_id, "transactions", (("account",),)),
            topic_name(s.kafka.group_id, "transactions", (("order_id",),))}
    expected = backtest_ids(cfg, events + markers)
    assert len(expected) > 50
    with RunnerThread(cfg) as r:
        ends = end_offsets(kafka_bootstrap, topic, PARTITIONS)
        wait_for(lambda: committed_offsets(kafka_bootstrap, s.kafka.group_id, topic,
                                           PARTITIONS) == ends, 90, interval=0.5,
                 what="the input committed")
        if declared:  # ... and what was forwarded, read after the hops
            wait_for(lambda: set(alerts_of(kafka_bootstrap, topic)) >= expected, 60,
                     interval=0.5, what="the backtest's alerts")
        time.sleep(1.0)
        r.wait_checkpointed()
        stats = dict(r.runner.stats)
    md = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    got = alerts_of(kafka_bootstrap, topic)
    if declared:
        assert hops <= set(md) and all(len(md[h].partitions) == PARTITIONS for h in hops)
        assert sorted(got) == sorted(expected), (len(got), len(expected))
        dead = [r.headers for r in read_topic(kafka_bootstrap, s.kafka.dead_letter_topic)]
        # the bad time is judged once (the input path reports it for card_testing; the
        # hops of account_burst and unpaid_order do not report it again)
        assert [d.get("cep.reason") for d in dead].count("bad_time") == 1, dead
        missing = sorted((d["cep.source.topic"], d.get("cep.repartition.source", ""))
                         for d in dead if d.get("cep.reason") == "missing_key")
        account_hop = topic_name(s.kafka.group_id, "transactions", (("account",),))
        assert [t for t, _ in missing] == sorted([topic, account_hop]), missing
        assert dict(missing)[account_hop].startswith(f"{topic}:0:")  # the input record
        assert stats["records_in"] > len(events)  # the hops' records are read too
    else:
        assert not (set(md) & hops)
        # an account's events are matched per task: account_burst misses matches and
        # makes some the backtest does not have
        assert expected - set(got), "without the hop the alerts should differ"
        assert len(got) == len(set(got))


@pytest.mark.parametrize("eos", [True, False], ids=["exactly-once", "at-least-once"])
def test_three_processes_with_a_repartition_topic_give_the_backtest_alerts(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, eos: bool
) -> None:
    """1 -> 3 processes, `kill -9` of one, back to 1, while events flow; exactly-once:
    the read_committed alert ids are a backtest's, none twice, none missing;
    at-least-once: none missing, none the backtest lacks (the records a replay forwards
    again are dropped after the hop, else they would count twice in a match)."""
    topic = topic_factory(partitions=PARTITIONS)
    a, b, c = (Instance(n, tmp_path, kafka_bootstrap, topic, eos) for n in "abc")
    for i in (a, b, c):
        configure(i.cfg, declared=True)
    events = accounts(workload(8000, seed=7))
    markers = end_markers(events)
    s = settings_of(a.cfg)
    expected = backtest_ids(a.cfg, events + markers)
    assert len(expected) > 100
    fed = threading.Event()
    everyone = [a, b, c]
    try:
        a.start()
        wait_for(lambda: covered([a]), 60, what="one instance running the 6 tasks")
        def flow() -> None:  # ~25 s of events: through the scale-up, the kill, the scale-down
            feed(kafka_bootstrap, topic, events, 0.1, every=30)
            fed.set()

        feeder = threading.Thread(target=flow, daemon=True)
        feeder.start()
        time.sleep(1.0)
        b.start()
        c.start()
        wait_for(lambda: covered([a, b, c]) and all(i.running() for i in everyone), 90,
                 what="three instances sharing the 6 tasks")
        time.sleep(1.0)
        assert not fed.is_set(), "the events should still flow at the kill"
        b.kill()
        wait_for(lambda: covered([a, c]), 90, what="the survivors taking b's tasks")
        assert c.terminate() == 0, c.log_text()[-3000:]
        wait_for(lambda: covered([a]), 90, what="a running the 6 tasks again")
        assert fed.wait(120)
        feed(kafka_bootstrap, topic, markers)
        ends = end_offsets(kafka_bootstrap, topic, PARTITIONS)
        wait_for(lambda: committed_offsets(kafka_bootstrap, s.kafka.group_id, topic,
                                           PARTITIONS) == ends, 120, interval=0.5,
                 what="the group to commit the end of the input")
        wait_for(lambda: set(alerts_of(kafka_bootstrap, topic)) >= expected, 120,
                 interval=1.0, what="the backtest's alerts (read after the hops)")
        time.sleep(2.0)  # a duplicate would come now
        assert a.terminate() == 0, a.log_text()[-3000:]
    finally:
        for i in everyone:
            if i.alive():
                i.kill()
    got = alerts_of(kafka_bootstrap, topic)
    missing, extra = expected - set(got), set(got) - expected
    logs = "\n".join(f"==== {i.name}\n{i.log_text()[-2500:]}" for i in everyone)
    assert not missing, f"{len(missing)} of {len(expected)} alerts missing\n{logs}"
    assert not extra, f"{len(extra)} alerts the backtest does not have\n{logs}"
    if eos:
        assert len(got) == len(set(got)), "duplicates in exactly-once mode"
    again = sum(i.log_text().count("forwarded again") for i in everyone)
    print(f"\n[{'eos' if eos else 'alo'}] {len(got) - len(set(got))} duplicate alerts of "
          f"{len(expected)}; {again} hop batches with records forwarded again")


def test_a_hot_loaded_pattern_keyed_otherwise_gets_its_repartition_topic(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    """A pattern loaded while the runner runs, keyed by neither the topic's key nor an
    existing hop's: the runner creates its hop and subscribes to it (a rebalance);
    the events after the load give the backtest's alerts."""
    from cep.compiler.pipeline import compile_pattern
    from cep.dsl import load_source

    topic = topic_factory(partitions=PARTITIONS)
    cfg = write_config(tmp_path, kafka_bootstrap, topic, checkpoint="200ms")
    cfg.write_text(cfg.read_text().replace('time_field = "ts"\n',
                                           'time_field = "ts"\npartition_key = "card_id"\n', 1))
    s = settings_of(cfg)
    account_hop = topic_name(s.kafka.group_id, "transactions", (("account",),))
    events = accounts(workload(2000, seed=4))
    markers = end_markers(events)
    with RunnerThread(cfg) as r:
        assert account_hop not in r.runner.hops.topics()  # unpaid_order's hop only
        plan = compile_pattern(load_source(ACCOUNT_PATTERN)[0])
        r.runner.control.submit(lambda e: e.add(plan)).result(30)
        wait_for(lambda: any(t == account_hop for t, _ in list(r.runner.assigned)), 60,
                 what="the new hop's partitions assigned")
        feed(kafka_bootstrap, topic, events + markers)
        configure(cfg, declared=False)  # the backtest: the three patterns
        expected = backtest_ids(cfg, events + markers)
        assert len(expected) > 20
        wait_for(lambda: set(alerts_of(kafka_bootstrap, topic)) >= expected, 90,
                 interval=0.5, what="the backtest's alerts")
    md = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert len(md[account_hop].partitions) == PARTITIONS
    got = set(alerts_of(kafka_bootstrap, topic))
    assert got == expected
    assert {a.record["pattern"] for a in r.alerts} >= {"account_burst"}


def test_a_repartition_topic_with_another_partition_count_is_refused(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    from service.kafka.checkpoint import KafkaRunnerError

    topic = topic_factory(partitions=3)
    cfg = write_config(tmp_path, kafka_bootstrap, topic)
    configure(cfg, declared=True)
    s = settings_of(cfg)
    hop = topic_name(s.kafka.group_id, "transactions", (("account",),))
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(hop, num_partitions=2, replication_factor=-1)])[hop].result(30)
    try:
        runner = RunnerThread(cfg)
        runner.thread.start()
        runner.thread.join(60)
        assert isinstance(runner.error, KafkaRunnerError)
        assert f"the repartition topic {hop} has 2 partition(s) but the input has 3" in str(
            runner.error)
    finally:
        admin.delete_topics([hop])
