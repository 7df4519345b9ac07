"""The alert hub: every alert the engine emits passes through here.

- each alert gets a sequence id (1, 2, 3, ... for the life of the process; the SSE
  `id:`), and is serialised to JSON once;
- the last `capacity` alerts stay in a bounded buffer (`GET /alerts`, and the
  catch-up of an SSE client that reconnects with `Last-Event-ID`);
- every open SSE stream gets them (`subscribe`): publishing happens on the engine's
  thread and hands the batch to each subscriber's asyncio loop; a subscriber that
  is more than `max_pending` alerts behind when a batch comes is closed (the batch's
  own size does not count: one large batch never cuts off a fast client), and catches up from the
  buffer when it reconnects with its last id;
- in embedded mode they are appended to the alerts file (JSONL).

Sequence ids restart at 1 with the process: an SSE client that sends a Last-Event-ID
larger than the current last id (the service restarted) gets the whole buffer.
Deduplicate on `alert_id`, which is stable across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from cep.runtime.engine import Alert

log = logging.getLogger("cep.service")


def dumps(obj: Any) -> bytes:
    """JSON bytes; values orjson refuses (e.g. integers beyond 64 bits) via `json`."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, default=str, allow_nan=False, separators=(",", ":")).encode()


def key_text(key: Any) -> str:
    """How an alert's key is matched by the `key` filter (composite keys: a,b)."""
    if key is None:
        return ""
    if isinstance(key, list):
        return ",".join(key_text(k) for k in key)
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


@dataclass(frozen=True, slots=True)
class HubItem:
    id: int
    at_ms: int  # wall clock when the hub received it
    pattern: str
    key: str
    severity: str
    topic: str | None
    data: bytes  # the alert record as JSON

    def envelope(self) -> bytes:
        topic = dumps(self.topic)
        return b'{"id":%d,"topic":%s,"alert":%s}' % (self.id, topic, self.data)


@dataclass(frozen=True)
class AlertFilter:
    pattern: str | None = None
    key: str | None = None
    severity: str | None = None

    def __call__(self, item: HubItem) -> bool:
        return (
            (self.pattern is None or item.pattern == self.pattern)
            and (self.key is None or item.key == self.key)
            and (self.severity is None or item.severity == self.severity)
        )


class Subscription:
    """One SSE client: batches of items arrive on its own asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_pending: int) -> None:
        self.loop = loop
        self.max_pending = max_pending
        self.queue: asyncio.Queue[list[HubItem] | None] = asyncio.Queue()
        self.pending = 0
        self.closed = False

    def _deliver(self, items: list[HubItem] | None) -> None:  # on the subscriber's loop
        if self.closed:
            return
        if items is None:
            self.closed = True
            self.queue.put_nowait(None)
            return
        if self.pending > self.max_pending:
            # too slow: more than max_pending alerts not taken before this batch (a
            # batch larger than max_pending alone does not cut off a fast client); end
            # the stream, it resumes from the buffer
            self.closed = True
            self.queue.put_nowait(None)
            return
        self.pending += len(items)
        self.queue.put_nowait(items)

    async def get(self) -> list[HubItem] | None:
        items = await self.queue.get()
        if items is not None:
            self.pending -= len(items)
        return items


class AlertHub:
    def __init__(
        self,
        capacity: int = 10_000,
        alerts_file: Path | None = None,
        *,
        on_alerts: Callable[[list[dict[str, Any]]], None] | None = None,
        max_pending: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.capacity = capacity
        self.max_pending = max_pending
        self._buf: deque[HubItem] = deque(maxlen=max(1, capacity))
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._last = 0
        self._clock = clock
        self._on_alerts = on_alerts
        self._file: IO[bytes] | None = None
        self.alerts_file = alerts_file
        self.file_errors = 0
        self.closed = False

    # -- lifecycle

    def open(self) -> None:
        if self.alerts_file is not None and self._file is None:
            self.alerts_file.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.alerts_file, "ab")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        """End every SSE stream (server shutdown) and close the alerts file."""
        with self._lock:
            self.closed = True
            subs = list(self._subs)
            self._subs.clear()
            if self._file is not None:
                self._file.close()
                self._file = None
        for sub in subs:
            with contextlib.suppress(RuntimeError):  # its loop is gone already
                sub.loop.call_soon_threadsafe(sub._deliver, None)

    # -- publishing (engine thread)

    def publish(self, alerts: Sequence[Alert]) -> list[HubItem]:
        """Number, buffer, write and fan out a batch of alerts. Thread-safe."""
        if not alerts:
            return []
        now = int(self._clock() * 1000)
        records = [a.record for a in alerts]
        with self._lock:
            items = []
            for a in alerts:
                self._last += 1
                rec = a.record
                items.append(HubItem(
                    self._last, now, str(rec.get("pattern")), key_text(rec.get("key")),
                    str(rec.get("severity")), a.topic, dumps(rec),
                ))
            self._buf.extend(items)
            if self._file is not None:
                try:
                    self._file.write(b"".join(i.data + b"\n" for i in items))
                    self._file.flush()
                except OSError as err:  # the buffer and the streams still get them
                    self.file_errors += 1
                    log.error("cannot append %d alerts to %s: %s", len(items),
                              self.alerts_file, err)
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub._deliver, items)
            except RuntimeError:  # the subscriber's event loop is closed
                self.unsubscribe(sub)
        if self._on_alerts is not None:
            self._on_alerts(records)
        return items

    # -- reading

    @property
    def last_id(self) -> int:
        return self._last

    def __len__(self) -> int:
        return len(self._buf)

    def oldest_id(self) -> int | None:
        with self._lock:
            return self._buf[0].id if self._buf else None

    def recent(
        self,
        flt: AlertFilter | None = None,
        *,
        after_id: int | None = None,
        since_ms: int | None = None,
        limit: int | None = None,
        newest: bool = True,
    ) -> list[HubItem]:
        """Buffered alerts with id > after_id and received at/after since_ms, oldest
        first; with `limit`, the newest `limit` of them (or the oldest, `newest=False`:
        paging forward from `after_id`)."""
        with self._lock:
            items: Iterable[HubItem] = list(self._buf)
        if after_id is not None:
            items = (i for i in items if i.id > after_id)
        if since_ms is not None:
            items = (i for i in items if i.at_ms >= since_ms)
        if flt is not None:
            items = (i for i in items if flt(i))
        if limit is not None and not newest:
            return list(itertools.islice(items, limit))
        out = list(items)
        if limit is not None and len(out) > limit:
            out = out[len(out) - limit:]
        return out

    # -- SSE subscribers

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscription:
        sub = Subscription(loop, self.max_pending)
        with self._lock:
            if self.closed:
                sub.closed = True
                sub.queue.put_nowait(None)
            else:
                self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)
