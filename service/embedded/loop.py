"""The embedded engine loop (no Kafka): the single writer of the engine.

One thread owns the engine. It takes decoded batches (`POST /events`) from a queue,
and between two batches runs what the API submitted to `Control` (pattern and model
swaps, snapshots for `/metrics` and `GET /patterns`). When no batch arrives for
`tick_s` it calls `engine.tick()`, so idle clocks advance with the wall clock and
timers (windows, `then not`, `on timeout`) fire on a quiet stream.

Per batch, in order: pending control functions; the driver's step
(`cep/runtime/driver.py`: `engine.process`, then its sinks: alerts to the hub
(buffer, SSE, alerts file), dead letters to the dead-letters file); metrics; then the
request that posted the batch gets its counts. A batch is never half-processed: a stop
request is queued behind the batches already accepted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cep.runtime.driver import Driver
from cep.runtime.engine import Engine
from cep.runtime.records import Alert, Batch, DeadLetter, Result
from service.api.hub import dumps
from service.control import Control
from service.metrics import ServiceMetrics

log = logging.getLogger("cep.service")


@dataclass
class Outcome:
    received: int
    accepted: int
    alerts: int
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def reasons(self) -> dict[str, int]:
        return dict(Counter(d.reason for d in self.dead_letters))


class DeadLetterFile:
    """Dead letters as JSONL, one `DeadLetter.to_json()` record a line (a driver sink)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._f: IO[bytes] | None = None

    def write(self, dead: Sequence[DeadLetter]) -> None:
        if self.path is None or not dead:
            return
        try:
            if self._f is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._f = open(self.path, "ab")  # noqa: SIM115 - closed in close()
            self._f.write(b"".join(dumps(d.to_json()) + b"\n" for d in dead))
            self._f.flush()
        except OSError as err:  # still counted and answered; never fails the batch
            log.error("cannot append %d dead letters to %s: %s", len(dead), self.path, err)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class _Publish:
    """Alerts to the service (hub: buffer, SSE, alerts file), as a driver sink."""

    def __init__(self, on_alerts: Callable[[list[Alert]], object]) -> None:
        self.on_alerts = on_alerts

    def write(self, result: Result, batch: Batch | None) -> None:
        if result.alerts:
            self.on_alerts(result.alerts)


class _DeadLetters:
    def __init__(self, file: DeadLetterFile) -> None:
        self.file = file

    def write(self, result: Result, batch: Batch | None) -> None:
        self.file.write(result.dead_letters)


_STOP = object()


class EmbeddedLoop:
    def __init__(
        self,
        engine: Engine,
        control: Control,
        on_alerts: Callable[[list[Alert]], object],
        metrics: ServiceMetrics | None = None,
        dead_letters: DeadLetterFile | None = None,
        tick_s: float = 0.2,
    ) -> None:
        self.engine = engine
        self.control = control
        self.on_alerts = on_alerts
        self.metrics = metrics
        self.dead_letters = dead_letters or DeadLetterFile(None)
        self.tick_s = tick_s
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cep-engine", daemon=True)
        self._accepting = True
        self.batches = 0
        self.driver = Driver(engine, [_Publish(on_alerts), _DeadLetters(self.dead_letters)])

    # -- control from other threads

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: Batch) -> Future[Outcome]:
        fut: Future[Outcome] = Future()
        if not self._accepting:
            fut.set_exception(RuntimeError("the engine loop is stopping"))
            return fut
        self._q.put((fut, batch))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batches already queued, then stop."""
        self._accepting = False
        self._q.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.dead_letters.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the loop

    def _run(self) -> None:
        engine, control = self.engine, self.control
        last_tick = time.monotonic()
        self.ready.set()
        try:
            while True:
                control.run_pending(engine)
                try:
                    item = self._q.get(timeout=self.tick_s)
                except queue.Empty:
                    self._tick()
                    last_tick = time.monotonic()
                    continue
                if item is _STOP:
                    break
                fut, batch = item
                if not fut.set_running_or_notify_cancel():
                    continue
                control.run_pending(engine)  # swaps take effect before this batch
                try:
                    outcome = self._process(batch)
                except Exception as exc:  # a bug: report it to the caller, keep running
                    log.exception("batch of %d events failed", len(batch.events))
                    if self.metrics is not None:
                        self.metrics.loop_errors.inc()
                    fut.set_exception(exc)
                    continue
                fut.set_result(outcome)
                if time.monotonic() - last_tick >= self.tick_s:
                    self._tick()
                    last_tick = time.monotonic()
        finally:
            self.ready.clear()
            self.stopped.set()
            control.run_pending(engine)

    def _process(self, batch: Batch) -> Outcome:
        t0 = time.perf_counter()
        # each HTTP partition of each stream has its own watermark
        batch.partition = f"{batch.source}:{batch.partition}"
        res = self.driver.step(batch)
        dt = time.perf_counter() - t0
        self.batches += 1
        dead = res.dead_letters
        if self.metrics is not None:
            self.metrics.observe_batch(batch.source, batch.received, dt)
            self.metrics.recent.add_events(batch.source, batch.events)
            self.metrics.recent.add_dead(batch.source, dead)
            if batch.dead_letters:
                self.metrics.decode_error(batch.source, n=len(batch.dead_letters))
        return Outcome(batch.received, batch.received - len(dead), len(res.alerts), dead)

    def _tick(self) -> None:
        try:
            self.driver.tick()
        except Exception:
            log.exception("engine tick failed")
            if self.metrics is not None:
                self.metrics.loop_errors.inc()
