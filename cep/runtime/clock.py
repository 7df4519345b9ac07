"""Event-time watermarks.

A source partition's watermark is `max event time seen - max_out_of_orderness - 1`
(Flink's BoundedOutOfOrderness: an event whose time equals the watermark is already
late). The clock's watermark is the minimum over active partitions. A partition that
has been quiet for `idle_ms` of wall-clock time stops holding the others back; when
every partition is quiet the watermark moves on with the wall clock, so timers for
things that did *not* happen still fire on a quiet stream. The watermark never goes
back. A bounded input ends with `finish()`: watermark +infinity.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

NEG_INF = float("-inf")
POS_INF = float("inf")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Clock:
    __slots__ = ("_lag", "_last_seen", "_max_ts", "_wm", "idle_ms", "now", "ooo_ms")

    def __init__(
        self,
        ooo_ms: int = 0,
        idle_ms: int | None = None,
        now: Callable[[], int] = wall_ms,
    ) -> None:
        if ooo_ms < 0:
            raise ValueError("max out-of-orderness must be >= 0")
        self.ooo_ms = ooo_ms
        self.idle_ms = idle_ms
        self.now = now
        self._max_ts: dict[Hashable, int] = {}
        self._last_seen: dict[Hashable, int] = {}
        self._lag: dict[Hashable, int] = {}  # per-partition out-of-orderness, if not default
        self._wm: float = NEG_INF

    @property
    def watermark(self) -> float:
        return self._wm

    def observe(self, partition: Hashable, max_ts: int | None, ooo_ms: int | None = None) -> None:
        """Record a batch from `partition` whose largest (valid, on-time) time is max_ts.
        `ooo_ms` overrides the clock's out-of-orderness for this partition's stream."""
        self._last_seen[partition] = self.now()
        if ooo_ms is not None:
            self._lag[partition] = ooo_ms
        if max_ts is not None and max_ts > self._max_ts.get(partition, -(2**62)):
            self._max_ts[partition] = max_ts

    def partitions(self) -> dict[Hashable, int]:
        return dict(self._max_ts)

    def advance(self, now: int | None = None) -> float:
        """Recompute the watermark from the partitions (`now`: the wall clock, if not
        the clock's own); returns it."""
        if not self._max_ts:
            return self._wm
        lag = self._lag
        default = self.ooo_ms
        marks = {p: ts - lag.get(p, default) - 1 for p, ts in self._max_ts.items()}
        if self.idle_ms is None:
            cand = min(marks.values())
        else:
            if now is None:
                now = self.now()
            active = [
                m for p, m in marks.items() if now - self._last_seen.get(p, now) < self.idle_ms
            ]
            if active:
                cand = min(active)
            else:
                # all quiet: move on with the wall clock since the last event
                last = max(self._last_seen.values())
                cand = max(marks.values()) + (now - last)
        if cand > self._wm:
            self._wm = cand
        return self._wm

    def move_to(self, t: float) -> None:
        """Set the watermark to `t` if that is ahead (arrival-time clocks: every event
        is due at once)."""
        if t > self._wm:
            self._wm = t

    def finish(self) -> float:
        self._wm = POS_INF
        return self._wm

    def restore(self, watermark: float, partitions: dict[Hashable, int]) -> None:
        """Back to a checkpoint: restored partitions count as just seen, so their idle
        timeout runs from the restore, not from the epoch."""
        self._wm = watermark
        self._max_ts = dict(partitions)
        now = self.now()
        self._last_seen = {p: now for p in partitions}
