"""Partition tasks of the Kafka runner (docs/scale-out.md).

A task is one input partition number: partition n of every input topic (the input
topics are co-partitioned: the same partition count, checked at start-up). Task n
has its own engine (`Engine.task(n)`), its own RocksDB (`state_dir/task-<n>`) and
changelog partition n. The runner opens a task when the group assigns its
partitions (restoring its state first) and closes it when they are revoked (after
a checkpoint) or lost (without one).

`TaskTable` is the thread-safe view of the tasks that `GET /tasks`, `/ready` and
the metrics read; only the runner's thread writes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cep.errors import CepError

if TYPE_CHECKING:  # the REST app imports this module; confluent_kafka only in Kafka mode
    from confluent_kafka.admin import AdminClient

    from cep.state.store import StateStore

TP = tuple[str, int]

RESTORING = "restoring"
RUNNING = "running"


class PartitionMismatchError(CepError):
    """The input topics do not have the same partition count (or the changelog has
    another count than the input)."""


def partition_counts(admin: AdminClient, topics: Iterable[str], *,
                     timeout: float = 30.0) -> dict[str, int]:
    """Partition count per existing topic (topics that do not exist are left out)."""
    md = admin.list_topics(timeout=timeout)
    out: dict[str, int] = {}
    for t in topics:
        tm = md.topics.get(t)
        if tm is not None and tm.error is None and tm.partitions:
            out[t] = len(tm.partitions)
    return out


def task_count(counts: dict[str, int], inputs: list[str]) -> int:
    """The number of tasks: the input topics' common partition count. Refuses input
    topics that do not exist, or whose partition counts differ (a task must read
    partition n of every input topic: co-partitioning, as in Kafka Streams)."""
    missing = [t for t in inputs if t not in counts]
    if missing:
        raise PartitionMismatchError(
            f"input topic(s) {', '.join(missing)} do not exist: create them (every input "
            "topic with the same number of partitions) before starting the service")
    distinct = {counts[t] for t in inputs}
    if len(distinct) != 1:
        detail = ", ".join(f"{t}: {counts[t]}" for t in inputs)
        raise PartitionMismatchError(
            f"the input topics are not co-partitioned ({detail}): a task reads partition n "
            "of every input topic, so they need the same partition count. Repartition the "
            "smaller ones (more partitions) or read them with separate services.")
    return distinct.pop()


class Task:
    """One open task: its store, its input partitions, its restore progress."""

    __slots__ = ("id", "opened_at", "partitions", "restore_end", "restore_records",
                 "restore_start", "restored_at", "seed_snapshot", "state", "store")

    def __init__(self, task_id: int, store: StateStore) -> None:
        self.id = task_id
        self.store = store
        self.partitions: set[TP] = set()
        self.state = RESTORING
        self.restore_start = 0
        self.restore_end = 0
        self.restore_records = 0
        self.opened_at = 0.0
        self.restored_at = 0.0
        self.seed_snapshot = False


@dataclass
class TaskRow:
    """One task as `GET /tasks` shows it."""

    task: int
    state: str
    partitions: list[dict[str, Any]] = field(default_factory=list)  # topic, partition, ...
    lag: int | None = None
    restore: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "state": self.state, "partitions": self.partitions,
                "lag": self.lag, "restore": self.restore}


class TaskTable:
    """The runner's tasks, readable from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, TaskRow] = {}
        self.tasks_total: int | None = None
        self.updated = 0.0

    def set(self, row: TaskRow) -> None:
        with self._lock:
            self._rows[row.task] = row
            self.updated = time.time()

    def drop(self, task: int) -> None:
        with self._lock:
            self._rows.pop(task, None)
            self.updated = time.time()

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()

    def rows(self) -> list[TaskRow]:
        with self._lock:
            return [self._rows[t] for t in sorted(self._rows)]

    def restoring(self) -> list[int]:
        return [r.task for r in self.rows() if r.state == RESTORING]
