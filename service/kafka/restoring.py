"""Tasks restoring their state between polls, their partitions paused (docs/scale-out.md,
"Rebalancing"; Kafka Streams' StoreChangelogReader).

On assignment the runner opens each new task's store, pauses the task's input
partitions and hands the task to a `Restorer`. Between two polls of its consumer the
runner calls `step()`, which reads a bounded slice of each restoring task's changelog
partition into its store (`ChangelogRestore.step`, service/kafka/changelog.py) and
returns the tasks that have reached the end; the runner then loads their engines and
resumes their partitions. Meanwhile the other tasks keep running and the consumer keeps
polling (its group membership does not depend on how long a restore takes:
`max.poll.interval.ms`). A task revoked or lost while restoring is dropped (`drop`):
nothing of it was read or committed, and its store keeps what it had applied (whole
checkpoints only), so a later restore continues from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from service.kafka.changelog import ChangelogRestore, Recovery
from service.kafka.tasks import Task

# (task, changelog offset reached, end offset)
OnProgress = Callable[[Task, int, int], None]


class Restorer:
    """The restoring tasks of one runner; only the runner's thread uses it."""

    __slots__ = ("_active", "budget_s", "consumer_conf", "on_progress", "timeout_s",
                 "topic")

    def __init__(self, consumer_conf: dict[str, Any], topic: str, *, timeout_s: float,
                 on_progress: OnProgress, budget_s: float = 0.1) -> None:
        self.consumer_conf = consumer_conf
        self.topic = topic
        self.timeout_s = timeout_s
        self.on_progress = on_progress
        self.budget_s = budget_s  # per step(), shared by the restoring tasks
        self._active: dict[int, tuple[Task, ChangelogRestore]] = {}

    def __bool__(self) -> bool:
        return bool(self._active)

    def tasks(self) -> list[int]:
        return sorted(self._active)

    def start(self, task: Task) -> None:
        def progress(reached: int, end: int) -> None:
            self.on_progress(task, reached, end)

        self._active[task.id] = (task, ChangelogRestore(
            task.store, self.consumer_conf, self.topic, partition=task.id,
            timeout_s=self.timeout_s, progress=progress))

    def step(self) -> list[tuple[Task, Recovery]]:
        """Advance every restoring task by a slice of its changelog; the tasks done."""
        done: list[tuple[Task, Recovery]] = []
        if not self._active:
            return done
        share = self.budget_s / len(self._active)
        for tid, (task, restore) in list(self._active.items()):
            t0 = time.monotonic()
            rec = restore.step(share)
            if rec is not None:
                restore.close()
                del self._active[tid]
                done.append((task, rec))
            elif time.monotonic() - t0 > self.budget_s:
                break  # a slow broker: give the consumer its poll
        return done

    def drop(self, tid: int) -> bool:
        """Stop restoring task `tid` (revoked or lost); True if it was restoring."""
        got = self._active.pop(tid, None)
        if got is None:
            return False
        got[1].close()
        return True

    def close(self) -> None:
        for tid in list(self._active):
            self.drop(tid)
