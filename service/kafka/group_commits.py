"""The outcome of the runner's offset commits to the consumer group.

At-least-once checkpoints commit the input offsets to the group asynchronously (the
task stores hold them first; the group's copy is what lag monitoring and other tools
read). An asynchronous commit can fail after the checkpoint returned: during a
rebalance the coordinator answers `REBALANCE_IN_PROGRESS` or `ILLEGAL_GENERATION` to a
commit sent with the previous generation. The consumer reports the outcome later, from
`consume()`, through `on_commit`. A failed commit must be sent again: the runner
only commits offsets that changed since its last checkpoint, so once a partition has
no more records to read, a lost commit would leave the group's offset behind for good
(the consumer lag never reaches 0, and anything waiting for the group to reach the end
of the topic waits forever: the 3-process stall of `benchmarks/scale.py`).

`GroupCommits.on_commit` is the consumer's `on_commit` callback; `take_failed()` hands
the runner the offsets to commit again at its next checkpoint.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, TopicPartition

TP = tuple[str, int]

log = logging.getLogger("cep.kafka")


class GroupCommits:
    """Collects the offsets whose commit to the group failed."""

    __slots__ = ("_failed", "_last_log", "failures")

    def __init__(self) -> None:
        self._failed: dict[TP, int] = {}
        self._last_log = 0.0
        self.failures = 0

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's `on_commit` callback (called from `consume()`, in the
        runner's thread)."""
        bad: dict[TP, tuple[int, str]] = {}
        for tp in partitions:
            perr = err if err is not None else tp.error
            if perr is None or tp.offset < 0:
                continue
            if err is not None and err.code() == KafkaError._NO_OFFSET:
                continue  # nothing to commit: not a failure
            bad[(tp.topic, tp.partition)] = (tp.offset, str(perr))
        if not bad:
            return
        self.failures += 1
        for key, (off, _) in bad.items():
            self._failed[key] = off
        now = time.monotonic()
        if now - self._last_log >= 5:
            self._last_log = now
            detail = "; ".join(f"{t}[{p}]@{off}: {why}"
                               for (t, p), (off, why) in sorted(bad.items()))
            log.warning("committing offsets to the group failed (%s); they are committed "
                        "again at the next checkpoint (the task stores have them)", detail)

    def take_failed(self) -> dict[TP, int]:
        """The offsets whose commit failed since the last call."""
        out, self._failed = self._failed, {}
        return out
