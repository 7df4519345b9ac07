"""A record that makes processing fail again and again becomes a dead letter (issue 14,
item 2): after repeated identical failures the partition is processed one record at
a time, the failing record is found, and after the rewind it is dead-lettered."""

from __future__ import annotations

from typing import Any

import pytest

from cep.runtime.engine import Alert, BatchResult
from service.checkpoint import RewindError
from service.poison import PoisonGuard


class FlakyEngine:
    """Raises on any batch holding an event with `boom`; alerts once per event."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def process(self, events: list[Any], *, stream: str, partition: Any,
                positions: list[Any]) -> BatchResult:
        if any(e.get("boom") for e in events):
            raise ValueError("cannot take this")
        self.seen.extend(positions)
        return BatchResult([Alert(None, e["k"], {"k": e["k"]}) for e in events], [])


def test_repeated_failures_isolate_the_record_and_dead_letter_it() -> None:
    guard, engine = PoisonGuard(repeats=2), FlakyEngine()
    events = [{"k": 1}, {"k": 2, "boom": True}, {"k": 3}]
    positions = [("t", 0, 10), ("t", 0, 11), ("t", 0, 12)]

    def run() -> BatchResult:
        return guard.process(engine, events, positions, stream="s",  # type: ignore[arg-type]
                             partition=("t", 0))

    with pytest.raises(RewindError, match=r"last checkpoint$"):
        run()  # first failure: back to the checkpoint, whole batches still
    with pytest.raises(RewindError, match="one record at a time"):
        run()  # the same again: isolate the partition
    engine.seen.clear()
    with pytest.raises(RewindError, match=r"record \('t', 0, 11\) failed alone"):
        run()  # one at a time: the culprit is found
    engine.seen.clear()
    res = run()  # after the rewind: a dead letter, the rest processed
    assert [(d.position, d.reason) for d in res.dead_letters] == [(("t", 0, 11), "poison")]
    assert "cannot take this" in res.dead_letters[0].detail
    assert [a.key for a in res.alerts] == [1, 3]
    guard.committed()
    assert guard.isolating == set()
