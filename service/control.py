"""The engine has exactly one writer: the loop that feeds it batches (embedded or
Kafka). Everything else (API handlers: pattern and model swaps, queries that must see a
consistent state) submits a function here; the loop runs pending functions between
two batches, so a change takes effect atomically at a batch boundary.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from cep.runtime.engine import Engine

T = TypeVar("T")


class Control:
    def __init__(self) -> None:
        self._q: queue.SimpleQueue[tuple[Callable[[Engine], Any], Future[Any]]] = (
            queue.SimpleQueue()
        )

    def submit(self, fn: Callable[[Engine], T]) -> Future[T]:
        """Run `fn(engine)` on the engine's loop at the next batch boundary."""
        fut: Future[T] = Future()
        self._q.put((fn, fut))
        return fut

    def run_pending(self, engine: Engine) -> int:
        """Called by the loop that owns the engine, between batches."""
        n = 0
        while True:
            try:
                fn, fut = self._q.get_nowait()
            except queue.Empty:
                return n
            n += 1
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(engine))
            except BaseException as exc:  # handed to the caller, never kills the loop
                fut.set_exception(exc)
