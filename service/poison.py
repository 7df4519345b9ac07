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

import logging
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

from cep.runtime.engine import BatchResult, DeadLetter, Engine
from service.checkpoint import RewindError

log = logging.getLogger("cep.kafka")


class PoisonGuard:
    def __init__(self, repeats: int = 2) -> None:
        self.repeats = repeats
        self.failures: Counter[tuple[Hashable, str]] = Counter()
        self.isolating: set[Hashable] = set()
        self.poison: dict[Any, str] = {}  # position -> why

    def process(self, engine: Engine, events: Sequence[Any], positions: Sequence[Any], *,
                stream: str, partition: Hashable) -> BatchResult:
        """`engine.process`, with known poison records as dead letters; a failure
        raises `RewindError` (see the module docstring)."""
        keep_e: list[Any] = []
        keep_p: list[Any] = []
        dead: list[DeadLetter] = []
        for e, pos in zip(events, positions, strict=True):
            why = self.poison.get(pos)
            if why is None:
                keep_e.append(e)
                keep_p.append(pos)
            else:
                dead.append(DeadLetter(e, pos, "poison", why))
        result = BatchResult()
        current: Any = None
        try:
            if partition in self.isolating:
                for e, pos in zip(keep_e, keep_p, strict=True):
                    current = pos
                    result.extend(engine.process([e], stream=stream, partition=partition,
                                                 positions=[pos]))
            elif keep_e:
                result = engine.process(keep_e, stream=stream, partition=partition,
                                        positions=keep_p)
        except Exception as exc:
            sig = f"{type(exc).__name__}: {exc}"[:300]
            if current is not None:
                self.poison[current] = f"processing this record failed: {sig}"
                log.error("record %s makes processing fail (%s): it becomes a dead letter "
                          "(poison)", current, sig)
                raise RewindError(f"record {current} failed alone ({sig}); going back to "
                                  "the last checkpoint, it will be a dead letter") from exc
            self.failures[(partition, sig)] += 1
            n = self.failures[(partition, sig)]
            if n >= self.repeats:
                self.isolating.add(partition)
            log.error("processing %s failed (%d time(s)): %s", partition, n, sig,
                      exc_info=n == 1)
            raise RewindError(
                f"processing {partition} failed ({sig}); going back to the last checkpoint"
                + (", then one record at a time" if n >= self.repeats else "")) from exc
        result.dead_letters[:0] = dead
        return result

    def committed(self) -> None:
        """A checkpoint committed: records before it are done with."""
        self.isolating.clear()
