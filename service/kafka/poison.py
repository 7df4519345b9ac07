"""Records that make processing fail again and again: dead-letter them and move on.

When `engine.process` raises on a partition's batch (a bug, or an event the engine
cannot take), the runner goes back to the last checkpoint (`RewindError`): the engine
may be half-way through the batch. The same failure again on the same partition
(`repeats` times, same exception text) switches that partition to one record at a
time from the checkpoint on; the record that fails alone is remembered as poison, and
after the next rewind it becomes a dead letter with reason `poison` (the detail
says what failed) instead of being processed. Isolation ends at the next committed
checkpoint. So one bad record costs a few rewinds, never a partition.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Hashable
from typing import Any

from cep.runtime.driver import Driver
from cep.runtime.records import Batch, DeadLetter, Result
from service.kafka.checkpoint import KafkaRunnerError, RewindError

log = logging.getLogger("cep.kafka")


class PoisonGuard:
    def __init__(self, repeats: int = 2) -> None:
        self.repeats = repeats
        self.failures: Counter[tuple[Hashable, str]] = Counter()
        self.isolating: set[Hashable] = set()
        self.poison: dict[Any, str] = {}  # position -> why

    def step(self, driver: Driver, batch: Batch) -> Result:
        """`driver.step(batch)`, with known poison records as dead letters; a failure
        of the engine raises `RewindError` (see the module docstring). Failures of the
        sinks (`RewindError`, `KafkaRunnerError`) pass through untouched."""
        if self.poison:
            batch = self._without_poison(batch)
        partition = batch.partition
        current: Any = None
        try:
            if partition in self.isolating and len(batch.events) > 1:
                result = Result()
                for i, (e, pos) in enumerate(zip(batch.events, batch.positions, strict=True)):
                    current = pos
                    first = i == 0
                    result.extend(driver.step(dataclasses.replace(
                        batch, events=[e], positions=[pos],
                        dead_letters=batch.dead_letters if first else [],
                        received=(batch.received - len(batch.events) + 1) if first else 1)))
                return result
            if partition in self.isolating and batch.events:
                current = batch.positions[0]
            return driver.step(batch)
        except (RewindError, KafkaRunnerError):
            raise
        except Exception as exc:
            raise self._failed(partition, current, exc) from exc

    def _without_poison(self, batch: Batch) -> Batch:
        keep_e: list[Any] = []
        keep_p: list[Any] = []
        dead: list[DeadLetter] = []
        for e, pos in zip(batch.events, batch.positions, strict=True):
            why = self.poison.get(pos)
            if why is None:
                keep_e.append(e)
                keep_p.append(pos)
            else:
                dead.append(DeadLetter(e, pos, "poison", why))
        if not dead:
            return batch
        return dataclasses.replace(batch, events=keep_e, positions=keep_p,
                                   dead_letters=sorted([*batch.dead_letters, *dead],
                                                       key=lambda d: d.position or ()))

    def _failed(self, partition: Hashable, current: Any, exc: Exception) -> RewindError:
        sig = f"{type(exc).__name__}: {exc}"[:300]
        if current is not None:
            self.poison[current] = f"processing this record failed: {sig}"
            log.error("record %s makes processing fail (%s): it becomes a dead letter "
                      "(poison)", current, sig)
            return RewindError(f"record {current} failed alone ({sig}); going back to the "
                               "last checkpoint, it will be a dead letter")
        self.failures[(partition, sig)] += 1
        n = self.failures[(partition, sig)]
        if n >= self.repeats:
            self.isolating.add(partition)
        log.error("processing %s failed (%d time(s)): %s", partition, n, sig, exc_info=n == 1)
        return RewindError(
            f"processing {partition} failed ({sig}); going back to the last checkpoint"
            + (", then one record at a time" if n >= self.repeats else ""))

    def committed(self) -> None:
        """A checkpoint committed: records before it are done with."""
        self.isolating.clear()
