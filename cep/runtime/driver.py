"""The one loop every mode runs: a source's batches through the engine to sinks.

    driver = Driver(engine, [sink, ...], checkpointer=None)
    for batch in source:            # files, POST /events, Kafka partitions, a dry run
        driver.step(batch)          # engine.process -> every sink -> checkpointer
    driver.tick()                   # when no batch came for a while (live modes)
    driver.finish()                 # bounded input: watermark +infinity

Per batch, in this order: the engine processes it (alerts; dead letters of decoding,
time checks and `missing_key`, in input order); each sink gets the result, in the
order given; then the checkpointer (if any) learns that the batch's output reached
every sink, so its input position may be committed. A sink that raises stops the
step before the checkpointer hears of the batch: its input is not committed.

The backtest (`cep.backtest`), the embedded service (`service/embedded/loop.py`), the
Kafka runner (`service/kafka/runner.py`) and the dry run of `POST /patterns/test`
use this loop; they differ only in their sources, sinks and checkpointers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from cep.runtime.engine import Engine
from cep.runtime.records import Alert, Batch, DeadLetter, Result


class Source(Protocol):
    """Yields batches (a bounded source ends; a live one is polled by its runner)."""

    def __iter__(self) -> Iterator[Batch]: ...


class Sink(Protocol):
    """Receives what a batch, a tick or the end of input produced. `batch` is None for
    ticks and the end of input (output not caused by one input batch)."""

    def write(self, result: Result, batch: Batch | None) -> None: ...


class Checkpointer(Protocol):
    """Told after each batch whose output reached every sink."""

    def processed(self, batch: Batch) -> None: ...


class ListSink:
    """Collects alerts and dead letters in memory (tests, dry runs, notebooks)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self.dead_letters: list[DeadLetter] = []

    def write(self, result: Result, batch: Batch | None) -> None:
        self.alerts.extend(result.alerts)
        self.dead_letters.extend(result.dead_letters)


class Driver:
    def __init__(
        self,
        engine: Engine,
        sinks: Sequence[Sink],
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.engine = engine
        self.sinks = list(sinks)
        self.checkpointer = checkpointer

    def step(self, batch: Batch) -> Result:
        """One batch: engine, sinks, checkpointer. Returns the batch's result."""
        result = self.engine.process(batch) if batch.events else Result(
            [], list(batch.dead_letters))
        self._emit(result, batch)
        if self.checkpointer is not None:
            self.checkpointer.processed(batch)
        return result

    def tick(self, now: int | None = None) -> Result:
        """Advance idle clocks and fire due timers; their alerts go to the sinks."""
        result = self.engine.tick(now)
        self._emit(result, None)
        return result

    def finish(self) -> Result:
        """End of a bounded input: every pending window and timeout fires."""
        result = self.engine.finish()
        self._emit(result, None)
        return result

    def run(self, source: Source, *, finish: bool = True) -> None:
        """Every batch of a bounded source, then (by default) the end of input."""
        for batch in source:
            self.step(batch)
        if finish:
            self.finish()

    def _emit(self, result: Result, batch: Batch | None) -> None:
        for sink in self.sinks:
            sink.write(result, batch)
