"""The fault suite (issue 14): what production throws at the Kafka runner, against the
real broker, with Jepsen-style accounting (fault_helpers.py): the alerts read back are
compared with a backtest over the same valid input, every poison record is a dead
letter with its reason.

Faults: garbage in an `.sst` file (both modes), a state store rolled back behind the
group's offsets (what a damaged write-ahead log does; at-least-once), an oversized key,
a 1 MB key field and a 10 MB record (both modes), `kill -9` at random points and
broker restarts (both modes, under a supervisor that restarts a process that exits
non-zero), and a full disk under the state store (a small tmpfs; root only).
A few runs per fault, one broker for the session (docs/operations.md, "Faults").
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from fault_helpers import Account, Supervisor, account, fill, mount_tmpfs, umount
from kafka_runner_helpers import (
    BASE_TS,
    MINUTE,
    RunnerThread,
    alert_ids,
    read_topic,
    settings_of,
    wait_for,
    workload,
    write_config,
)

from cep.state.rocks import RocksStore
from service.config import Settings
from service.control import Control
from service.kafka.checkpoint import KafkaRunnerError
from service.kafka.engine_factory import engine_from_settings
from service.kafka.runner import KafkaRunner

pytestmark = pytest.mark.kafka

MODES = [pytest.param(False, id="at-least-once"), pytest.param(True, id="exactly-once")]


@pytest.fixture
def work() -> Iterator[Path]:
    """A private directory for the test (not pytest's tmp_path: several pytest sessions
    on one machine delete each other's older base temp directories, and these tests
    run for a while)."""
    path = Path(tempfile.mkdtemp(prefix="cep-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def events_for(n: int, seed: int, t0: int = BASE_TS, tag: str = "") -> list[dict[str, Any]]:
    return workload(n, seed, t0=t0, tag=tag)


def end_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Far later than everything: every window and `then not` is decided."""
    return {"id": "end", "ts": events[-1]["ts"] + 60 * MINUTE, "type": "end", "card_id": "end"}


def produce_all(bootstrap: str, topic: str, items: list[Any], *, pace: float = 0.0,
                max_bytes: int = 1_000_000) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
                  "message.max.bytes": max_bytes})
    for i, it in enumerate(items):
        key, value = it if isinstance(it, tuple) else (None, it)
        p.produce(topic, value if isinstance(value, bytes) else orjson.dumps(value), key)
        if i % 200 == 199:
            p.poll(0)
            if pace:
                time.sleep(pace)
    assert p.flush(60) == 0


def end_offset(bootstrap: str, topic: str) -> int:
    """The end of the topic's partition 0 (-1 while the broker cannot say)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-end"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    except KafkaException:
        return -1
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset (-1 while the broker cannot say, e.g. restarting)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    except KafkaException:
        return -1
    finally:
        c.close()


def backtest_to(s: Settings, events: list[dict[str, Any]]) -> list[str]:
    """A backtest that ends where the runner's watermark ends (no finish())."""
    engine = engine_from_settings(s)
    return [a.record["alert_id"] for a in engine.process(events, stream="transactions").alerts]


def read_alerts(bootstrap: str, s: Settings, tag: str) -> list[str]:
    return alert_ids(read_topic(bootstrap, s.kafka.alert_topic)
                     + read_topic(bootstrap, f"alerts2-{tag}"))


def checked_run(fault: str, eos: bool, bootstrap: str, s: Settings, tag: str,
                events: list[dict[str, Any]], *, runs: int = 1, note: str = "") -> Account:
    """Account for a run (fault_helpers.account) and check the mode's guarantee: no
    alert lost, none false; exactly-once: none twice."""
    got = read_alerts(bootstrap, s, tag)
    acc = account(fault, "exactly-once" if eos else "at-least-once", backtest_to(s, events),
                  got, read_topic(bootstrap, s.kafka.dead_letter_topic), runs=runs)
    assert acc.lost == 0 and acc.false == 0 and acc.expected > 20, (acc, note)
    if eos:
        assert acc.duplicated == 0, (acc, note)
    return acc


def _damage_largest_sst(state: Path) -> Path:
    store = RocksStore(state)  # everything into .sst files first (not only the WAL)
    store._db.flush()
    store._db.compact_range(None, None)
    store.close()
    ssts = sorted(state.glob("*.sst"), key=lambda f: f.stat().st_size)
    assert ssts, "no .sst file"
    f = ssts[-1]
    with f.open("r+b") as fh:
        fh.seek(f.stat().st_size // 3)
        fh.write(random.Random(3).randbytes(4096))
    return f


# ------------------------------------------------------------------ damaged state


@pytest.mark.parametrize("eos", MODES)
def test_garbage_in_an_sst(eos: bool, kafka_bootstrap: str, topic_factory: Any,
                           work: Path) -> None:
    topic = topic_factory(partitions=1)
    tag = topic.rsplit("-", 1)[-1]
    cfg = write_config(work, kafka_bootstrap, topic, exactly_once=eos)
    s = settings_of(cfg)
    first = events_for(3000, seed=5)
    second = events_for(1000, seed=6, t0=first[-1]["ts"] + 1000, tag="b")
    events = [*first, *second, end_event(second)]
    with RunnerThread(cfg) as r:
        produce_all(kafka_bootstrap, topic, first)
        r.wait_consumed(topic, len(first))
        r.wait_checkpointed()
    _damage_largest_sst(s.state_dir)
    if not eos:
        runner = KafkaRunner(s, engine_from_settings(s), Control(), None, threading.Event(),
                             threading.Event())
        with pytest.raises(KafkaRunnerError, match="no changelog to rebuild it from"):
            runner.run()
        account("sst-garbage", "at-least-once", [], [], [], runs=1)
        return
    with RunnerThread(cfg) as r:
        assert [x.mode for x in r.runner.recoveries] == ["rebuilt"]
        produce_all(kafka_bootstrap, topic, [*second, end_event(second)])
        r.wait_consumed(topic, len(events))
        r.wait_checkpointed()
    assert list(work.glob("state.unreadable-*")), "the damaged store was not moved aside"
    checked_run("sst-garbage", eos, kafka_bootstrap, s, tag, events)


def test_store_rolled_back_behind_the_group_replays_at_least_once(
        kafka_bootstrap: str, topic_factory: Any, work: Path) -> None:
    """A damaged WAL rolls RocksDB back to an older checkpoint while the group's
    offsets are further on. Resuming at the group's offsets with the old state gave
    false alerts (an order's payment skipped: `unpaid_order` fired); replaying from
    the store's offsets gives duplicates at most."""
    topic = topic_factory(partitions=1)
    tag = topic.rsplit("-", 1)[-1]
    cfg = write_config(work, kafka_bootstrap, topic)
    s = settings_of(cfg)
    a = events_for(1500, seed=7)
    b = events_for(1500, seed=8, t0=a[-1]["ts"] + 1000, tag="b")
    # orders created in `a` and paid in `b`: skipping `b` would make them "unpaid"
    t = a[-1]["ts"]
    a += [{"id": f"oc{i}", "ts": t + i, "type": "order_created", "order_id": f"rb-{i}"}
          for i in range(5)]
    b = [{"id": f"op{i}", "ts": b[0]["ts"] + i, "type": "payment_received",
          "order_id": f"rb-{i}"} for i in range(5)] + b
    events = [*a, *b, end_event(b)]
    old = work / "state-old"
    with RunnerThread(cfg) as r:
        produce_all(kafka_bootstrap, topic, a)
        r.wait_consumed(topic, len(a))
        r.wait_checkpointed()
    shutil.copytree(s.state_dir, old)
    with RunnerThread(cfg) as r:
        produce_all(kafka_bootstrap, topic, b)
        r.wait_consumed(topic, len(a) + len(b))
        r.wait_checkpointed()
    wait_for(lambda: committed(kafka_bootstrap, s.kafka.group_id, topic) == len(a) + len(b),
             30, what="the group's offsets")
    shutil.rmtree(s.state_dir)
    shutil.copytree(old, s.state_dir)  # what RocksDB's point-in-time WAL recovery leaves
    with RunnerThread(cfg) as r:
        produce_all(kafka_bootstrap, topic, [end_event(b)])
        r.wait_consumed(topic, len(events))
        r.wait_checkpointed()
        assert r.runner.stats["records_in"] == len(b) + 1  # b replayed
    checked_run("store-rolled-back", False, kafka_bootstrap, s, tag, events)


# ------------------------------------------------------------------ poison records


@pytest.mark.parametrize("eos", MODES)
def test_poison_records_are_dead_letters_and_the_partition_goes_on(
        eos: bool, kafka_bootstrap: str, topic_factory: Any, work: Path) -> None:
    topic = topic_factory(partitions=1, config={"max.message.bytes": str(16 * 1024 * 1024)})
    tag = topic.rsplit("-", 1)[-1]
    cfg = write_config(work, kafka_bootstrap, topic, exactly_once=eos)
    s = settings_of(cfg)
    good = events_for(2000, seed=9)
    t = good[1000]["ts"]
    huge_key_field = {"id": "huge-card", "ts": t, "type": "purchase",
                      "card_id": "c" * 1_000_000, "amount": 1.0}
    ten_mb = orjson.dumps({"id": "ten-mb", "ts": t, "type": "purchase", "card_id": "card-1",
                           "amount": 1.0, "blob": "x" * 10_000_000})
    items: list[Any] = [*good[:1000], huge_key_field, (b"k" * 10_000, good[1000]), ten_mb,
                        *good[1001:], end_event(good)]
    with RunnerThread(cfg) as r:
        produce_all(kafka_bootstrap, topic, items, max_bytes=16 * 1024 * 1024)
        r.wait_consumed(topic, len(items), timeout=120)
        r.wait_checkpointed(60)
        rewinds = r.runner.stats["rewinds"]
    dead = read_topic(kafka_bootstrap, s.kafka.dead_letter_topic)
    by_offset = {d.offset: d for d in dead}
    valid = [e for e in good if e is not good[1000]] + [end_event(good)]
    got = read_alerts(kafka_bootstrap, s, tag)
    acc = account("poison-records", "exactly-once" if eos else "at-least-once",
                  backtest_to(s, valid), got, dead)
    assert rewinds == 0
    reasons = sorted(d.headers["cep.reason"] for d in by_offset.values())
    assert reasons == ["event_too_large", "event_too_large", "key_too_large"]
    big = next(d for d in dead if d.headers.get("cep.original.size") == str(len(ten_mb)))
    assert big.headers["cep.truncated"] == "true" and len(big.value or b"") < 1_000_000
    assert acc.lost == 0 and acc.false == 0 and acc.expected > 20
    if eos:
        assert acc.duplicated == 0


# ------------------------------------------------------------------ processes


def _feed(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> threading.Thread:
    th = threading.Thread(target=produce_all, args=(bootstrap, topic, events),
                          kwargs={"pace": 0.15}, daemon=True)
    th.start()
    return th


def _finish(sup: Supervisor, bootstrap: str, s: Settings, topic: str, n: int,
            timeout: float = 180) -> None:
    wait_for(lambda: end_offset(bootstrap, topic) == n, 60, what="the input to be complete")
    wait_for(lambda: committed(bootstrap, s.kafka.group_id, topic) == n, timeout,
             interval=0.5, what="the runner to commit the end of the input")
    code = sup.stop()
    assert code == 0, (sup.exits, sup.runner.log_text()[-6000:])


@pytest.mark.parametrize("eos", MODES)
def test_kill_9_at_random_points(eos: bool, kafka_bootstrap: str, topic_factory: Any,
                                 work: Path) -> None:
    seed = int(time.time()) % 10_000
    rng = random.Random(seed)
    topic = topic_factory(partitions=1)
    tag = topic.rsplit("-", 1)[-1]
    cfg = write_config(work, kafka_bootstrap, topic, exactly_once=eos, checkpoint="150ms",
                       consumer={"group.instance.id": f"cep-{tag}",
                                 "session.timeout.ms": "10000"})
    s = settings_of(cfg)
    events = events_for(6000, seed=seed)
    events.append(end_event(events))
    sup = Supervisor(cfg, work / "runner.log")
    sup.start()
    feeder = _feed(kafka_bootstrap, topic, events)
    kills = 0
    try:
        for _ in range(2):
            wait_for(lambda n=kills: sup.runner.log_text().count("state restored") > n, 60,
                     what="the runner to restore its state")
            time.sleep(rng.uniform(0.2, 1.5))
            sup.kill()
            kills += 1
        feeder.join(120)
        _finish(sup, kafka_bootstrap, s, topic, len(events))
    finally:
        sup.halt()
    checked_run("kill-9", eos, kafka_bootstrap, s, tag, events, runs=kills + 1,
                note=f"seed {seed}")


@pytest.mark.parametrize("eos", MODES)
def test_broker_restart(eos: bool, restartable_broker: Any, kafka_bootstrap: str,
                        topic_factory: Any, work: Path) -> None:
    """Before: every broker restart stalled exactly-once mode for good (a fatal "static
    consumer fenced" logged as a warning; a transactional call hanging for minutes)."""
    topic = topic_factory(partitions=1)
    tag = topic.rsplit("-", 1)[-1]
    cfg = write_config(work, kafka_bootstrap, topic, exactly_once=eos,
                       consumer={"group.instance.id": f"cep-{tag}",
                                 "session.timeout.ms": "10000",
                                 "reconnect.backoff.max.ms": "1000"},
                       extra_kafka='transaction_timeout_ms = "20s"\nstall_exit_ms = "60s"')
    s = settings_of(cfg)
    events = events_for(4000, seed=21)
    events.append(end_event(events))
    sup = Supervisor(cfg, work / "runner.log")
    sup.start()
    feeder = _feed(kafka_bootstrap, topic, events)
    try:
        wait_for(lambda: "state restored" in sup.runner.log_text(), 60, what="start")
        time.sleep(1.0)
        down = restartable_broker.restart()
        feeder.join(180)
        _finish(sup, kafka_bootstrap, s, topic, len(events), timeout=240)
    finally:
        sup.halt()
    checked_run("broker-restart", eos, kafka_bootstrap, s, tag, events,
                runs=1 + sup.restarts, note=f"broker down {down:.1f}s")


@pytest.mark.parametrize("eos", MODES)
def test_full_disk_under_the_state_store(eos: bool, kafka_bootstrap: str,
                                         topic_factory: Any, work: Path) -> None:
    mnt = work / "small"
    why = mount_tmpfs(mnt, "16m")
    if why is not None:
        pytest.skip(why)
    sup: Supervisor | None = None
    try:
        topic = topic_factory(partitions=1)
        tag = topic.rsplit("-", 1)[-1]
        cfg = write_config(work, kafka_bootstrap, topic, exactly_once=eos)
        text = cfg.read_text().replace(f'state_dir = "{work / "state"}"',
                                       f'state_dir = "{mnt / "state"}"')
        cfg.write_text(text)
        s = settings_of(cfg)
        first = events_for(1500, seed=31)
        second = events_for(1500, seed=32, t0=first[-1]["ts"] + 1000, tag="b")
        events = [*first, *second, end_event(second)]
        sup = Supervisor(cfg, work / "runner.log")
        sup.start()
        produce_all(kafka_bootstrap, topic, first)
        wait_for(lambda: committed(kafka_bootstrap, s.kafka.group_id, topic) == len(first),
                 60, what="the first part committed")
        filler = fill(mnt)
        produce_all(kafka_bootstrap, topic, [*second, end_event(second)])
        wait_for(lambda: sup.exits and sup.exits[-1] != 0, 60,
                 what="the runner to stop on the full disk")
        assert "No space left" in sup.runner.log_text() or "IO error" in sup.runner.log_text()
        filler.unlink()  # the operator frees space; the supervisor's restart goes on
        _finish(sup, kafka_bootstrap, s, topic, len(events))
        checked_run("full-disk", eos, kafka_bootstrap, s, tag, events,
                    runs=1 + sup.restarts)
    finally:
        if sup is not None:
            sup.halt()
        umount(mnt)
