"""Bounded memory of the input the service has seen lately, for the console.

The analyst console backtests a pattern on "recent events" and lists recent dead
letters by reason; neither is kept anywhere else (events are not stored, dead letters
go to a file or topic). Both loops (embedded and Kafka) report here through
`ServiceMetrics.recent`; readers take copies under a lock. Only the last
`max_events` events (across streams) and `max_dead` dead letters are kept, so memory
is bounded whatever the input rate.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from cep.runtime.records import DeadLetter


class RecentInput:
    def __init__(self, max_events: int = 5_000, max_dead: int = 500) -> None:
        self._lock = threading.Lock()
        self._events: deque[tuple[str, Any]] = deque(maxlen=max_events)
        self._dead: deque[dict[str, Any]] = deque(maxlen=max_dead)
        self.max_events = max_events

    def add_events(self, source: str, events: Sequence[Any]) -> None:
        """Remember the newest events of a batch (a large batch keeps its tail)."""
        tail = events[-self.max_events:] if len(events) > self.max_events else events
        with self._lock:
            self._events.extend((source, e) for e in tail)

    def add_dead(self, source: str, dead: Iterable[DeadLetter]) -> None:
        with self._lock:
            self._dead.extend(
                {"source": source, "reason": d.reason, "detail": d.detail,
                 "position": d.position, "event": _jsonable(d.event)}
                for d in dead
            )

    def events(self, source: str | None = None, limit: int | None = None) -> list[Any]:
        """Oldest first; only `source` when given; the newest `limit`."""
        with self._lock:
            items = list(self._events)
        out = [e for s, e in items if source is None or s == source]
        return out[-limit:] if limit is not None else out

    def sources(self) -> dict[str, int]:
        with self._lock:
            items = list(self._events)
        counts: dict[str, int] = {}
        for s, _ in items:
            counts[s] = counts.get(s, 0) + 1
        return counts

    def dead(self, reason: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._dead)
        out = [d for d in items if reason is None or d["reason"] == reason]
        return out[-limit:] if limit is not None else out


def _jsonable(event: Any) -> Any:
    """Undecodable input (bytes) as text, at most 2,000 characters."""
    if isinstance(event, bytes | bytearray):
        return bytes(event[:2000]).decode("utf-8", "replace")
    if isinstance(event, str):
        return event[:2000]
    return event
