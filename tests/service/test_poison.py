"""A record that makes processing fail again and again becomes a dead letter (issue 14,
item 2): after repeated identical failures the partition is processed one record at
a time, the failing record is found, and after the rewind it is dead-lettered."""

from __future__ import annotations

import pytest

from cep.runtime.driver import Driver, ListSink
from cep.runtime.records import Alert, Batch, Result
from service.kafka.checkpoint import RewindError
from service.kafka.poison import PoisonGuard


class FlakyEngine:
    """Raises on any batch holding an event with `boom`; alerts once per event."""

    def process(self, batch: Batch) -> Result:
        if any(e.get("boom") for e in batch.events):
            raise ValueError("cannot take this")
        return Result([Alert(None, e["k"], {"k": e["k"]}) for e in batch.events],
                      list(batch.dead_letters))


def test_repeated_failures_isolate_the_record_and_dead_letter_it() -> None:
    guard, sink = PoisonGuard(repeats=2), ListSink()
    driver = Driver(FlakyEngine(), [sink])  # type: ignore[arg-type]
    events = [{"k": 1}, {"k": 2, "boom": True}, {"k": 3}]
    positions = [("t", 0, 10), ("t", 0, 11), ("t", 0, 12)]

    def run() -> Result:
        return guard.step(driver, Batch(list(events), list(positions), partition=("t", 0),
                                        received=3))

    with pytest.raises(RewindError, match=r"last checkpoint$"):
        run()  # first failure: back to the checkpoint, whole batches still
    with pytest.raises(RewindError, match="one record at a time"):
        run()  # the same again: isolate the partition
    with pytest.raises(RewindError, match=r"record \('t', 0, 11\) failed alone"):
        run()  # one at a time: the culprit is found
    sink.alerts.clear()
    sink.dead_letters.clear()
    run()  # after the rewind: a dead letter, the rest processed
    assert [(d.position, d.reason) for d in sink.dead_letters] == [(("t", 0, 11), "poison")]
    assert "cannot take this" in sink.dead_letters[0].detail
    assert [a.key for a in sink.alerts] == [1, 3]
    guard.committed()
    assert guard.isolating == set()
