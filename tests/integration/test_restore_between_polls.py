"""A task restores its state between polls with its partitions paused
(service/kafka/restoring.py, docs/scale-out.md "Rebalancing"): while one task reads a
long changelog partition, the process's other task already processes its events, and
the restoring task is shown as such with its progress; once restored, it runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from kafka_runner_helpers import BASE_TS, RunnerThread, produce, settings_of, wait_for, write_config

from service.kafka.store import COMMIT_KEY

pytestmark = pytest.mark.kafka

CHANGELOG_RECORDS = 300_000


def fill_changelog(bootstrap: str, topic: str, partition: int, n: int) -> None:
    """`n` state records (keys the engine does not load) and a checkpoint marker."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    for i in range(n):
        while True:
            try:
                p.produce(topic, b"v" * 20, b"x\x00%d" % i, partition=partition)
                break
            except BufferError:
                p.poll(0.05)
    p.produce(topic, b"1", COMMIT_KEY, partition=partition)
    assert p.flush(120) == 0


def test_one_task_processes_while_another_restores_a_long_changelog(
    kafka_bootstrap: str, kafka_admin: Any, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    cfg = write_config(tmp_path, kafka_bootstrap, topic)
    changelog = settings_of(cfg).kafka.changelog_topic
    for f in kafka_admin.create_topics([NewTopic(changelog, 2, 1)]).values():
        f.result(30)
    fill_changelog(kafka_bootstrap, changelog, 1, CHANGELOG_RECORDS)
    events = [{"id": f"e{i}", "ts": BASE_TS + i, "type": "purchase", "card_id": f"c{i % 9}",
               "amount": 5.0} for i in range(60)]
    produce(kafka_bootstrap, topic, events, key_field="card_id", partitions=2)
    n0 = sum(1 for e in events if sum(e["card_id"].encode()) % 2 == 0)
    assert 0 < n0 < len(events)

    r = RunnerThread(cfg)
    runner = r.runner
    seen: dict[str, Any] = {}

    def task0_done_while_task1_restores() -> bool:
        rows = {row.task: row for row in runner.task_table.rows()}
        t1 = rows.get(1)
        if (t1 is not None and t1.state == "restoring"
                and runner.positions.get((topic, 0)) == n0):
            seen["task1"] = t1.as_dict()
            seen["ready"] = r.ready.is_set()
            return True
        return False

    r.thread.start()
    try:
        wait_for(task0_done_while_task1_restores, 120, interval=0.01,
                 what="task 0 read to its end while task 1 is still restoring")
        # the restoring task: shown with its progress, its partition not read yet
        assert seen["task1"]["restore"]["done"] is False
        assert seen["task1"]["restore"]["records"] < CHANGELOG_RECORDS + 1
        assert not seen["ready"]  # ready once no task restores
        assert (topic, 1) not in runner.positions
        assert r.ready.wait(120), f"not ready: {r.error}"
        r.wait_consumed(topic, len(events))
        rows = {row.task: row.as_dict() for row in runner.task_table.rows()}
        assert rows[1]["state"] == "running"
        assert rows[1]["restore"] == {"start": 0, "end": CHANGELOG_RECORDS + 1,
                                      "records": CHANGELOG_RECORDS + 1, "done": True}
        assert runner.stats["changelog_records_replayed"] == CHANGELOG_RECORDS + 1
        # the restored store has the changelog's records
        store = runner.tasks[1].store
        assert store.get(b"x\x00%d" % (CHANGELOG_RECORDS - 1)) == b"v" * 20
    finally:
        t0 = time.monotonic()
        r.close()
        assert time.monotonic() - t0 < 60


def test_a_task_revoked_while_restoring_is_dropped_and_restored_by_its_new_owner(
    kafka_bootstrap: str, kafka_admin: Any, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    cfg_a = write_config(tmp_path / "a", kafka_bootstrap, topic)
    cfg_b = write_config(tmp_path / "b", kafka_bootstrap, topic)
    changelog = settings_of(cfg_a).kafka.changelog_topic
    for f in kafka_admin.create_topics([NewTopic(changelog, 2, 1)]).values():
        f.result(30)
    big = 2 * CHANGELOG_RECORDS
    for part in (0, 1):
        fill_changelog(kafka_bootstrap, changelog, part, big)
    events = [{"id": f"e{i}", "ts": BASE_TS + i, "type": "purchase", "card_id": f"c{i % 9}",
               "amount": 5.0} for i in range(60)]
    produce(kafka_bootstrap, topic, events, key_field="card_id", partitions=2)
    ends = [sum(1 for e in events if sum(e["card_id"].encode()) % 2 == p) for p in range(2)]

    a = RunnerThread(cfg_a)
    b = RunnerThread(cfg_b)
    last_state_on_a: dict[int, str] = {}
    read_on_a: set[int] = set()

    def watch_a() -> None:
        for row in a.runner.task_table.rows():
            last_state_on_a[row.task] = row.state
        read_on_a.update(p for (t, p) in list(a.runner.positions) if t == topic)

    a.thread.start()
    try:
        wait_for(lambda: (watch_a(), sorted(a.runner.restorer.tasks()) == [0, 1])[1], 60,
                 interval=0.01, what="a restoring both tasks")
        b.thread.start()

        def one_moved() -> bool:
            watch_a()
            return len(a.runner.tasks) == 1

        wait_for(one_moved, 120, interval=0.01, what="a task moved to b")
        moved = ({0, 1} - set(a.runner.tasks)).pop()
        # it left a while restoring: never run there, nothing of it read there
        assert last_state_on_a[moved] == "restoring", (
            "the restore ended before the rebalance: make the changelog longer")
        assert moved not in read_on_a
        assert b.ready.wait(120) and a.ready.wait(120), (a.error, b.error)
        wait_for(lambda: (watch_a(), b.runner.positions.get((topic, moved)) == ends[moved]
                          and a.runner.positions.get((topic, 1 - moved)) == ends[1 - moved])[1],
                 60, what="each task's partition read by its owner")
        assert moved not in read_on_a
        row = {r.task: r.as_dict() for r in b.runner.task_table.rows()}[moved]
        assert row["state"] == "running" and row["restore"]["end"] == big + 1
        # b restored the whole partition (a's half-restored store is a's own)
        assert b.runner.tasks[moved].store.get(b"x\x00%d" % (big - 1)) == b"v" * 20
    finally:
        b.close()
        a.close()
