"""The time axis of a generated stream: its span and a day/night traffic profile (UTC)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# Relative traffic per UTC hour: quiet at night (hours 0-5), busy in the day and evening.
HOUR_PROFILE: tuple[float, ...] = (
    0.30, 0.22, 0.18, 0.16, 0.18, 0.25,  # 00-05
    0.45, 0.70, 0.90, 1.00, 1.05, 1.10,  # 06-11
    1.15, 1.10, 1.05, 1.05, 1.10, 1.20,  # 12-17
    1.30, 1.30, 1.20, 1.00, 0.75, 0.50,  # 18-23
)  # fmt: skip

# Density target: with the default n_keys (n_events // 10) the stream spans one day.
EVENTS_PER_KEY_PER_DAY = 10.0
MIN_SPAN = 2 * HOUR
MAX_SPAN = 30 * DAY


def span_for(n_events: int, n_keys: int) -> int:
    span = DAY * (n_events / max(1, n_keys)) / EVENTS_PER_KEY_PER_DAY
    return int(min(MAX_SPAN, max(MIN_SPAN, span)))


@dataclass(frozen=True, slots=True)
class Timeline:
    start_ms: int
    span_ms: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.span_ms

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        """n sorted timestamps in [start, end) following the hourly profile.

        Sorted, so that events built from them are allocated in time order: a consumer
        iterating the final time-ordered list then walks memory nearly sequentially."""
        first = self.start_ms - self.start_ms % HOUR
        edges = np.arange(first, self.end_ms + HOUR, HOUR, dtype=np.int64)
        lo = np.maximum(edges[:-1], self.start_ms)
        hi = np.minimum(edges[1:], self.end_ms)
        keep = hi > lo
        lo, hi = lo[keep], hi[keep]
        profile = np.array(HOUR_PROFILE)
        weight = profile[(lo // HOUR) % 24] * (hi - lo)
        cum = np.cumsum(weight)
        u = rng.random(n) * cum[-1]
        b = np.searchsorted(cum, u, side="right")
        b = np.minimum(b, len(cum) - 1)
        prev = cum[b] - weight[b]
        frac = np.clip((u - prev) / weight[b], 0.0, 1.0 - 1e-12)
        ts: npt.NDArray[np.int64] = lo[b] + (frac * (hi[b] - lo[b])).astype(np.int64)
        ts.sort()
        return ts

    def place(self, r: random.Random, duration: int) -> int:
        """A start time for an incident lasting `duration` ms, away from the edges."""
        lo = self.start_ms + min(30 * MINUTE, self.span_ms // 20)
        hi = self.end_ms - duration - min(45 * MINUTE, self.span_ms // 10)
        return r.randint(lo, max(lo, hi))

    def place_at_hours(self, r: random.Random, first_hour: float, last_hour: float) -> int:
        """A time whose UTC hour-of-day lies in [first_hour, last_hour), inside the span if
        the span has such a time, otherwise on the first such day after the start."""
        day0 = self.start_ms - self.start_ms % DAY
        days: list[int] = []
        d = day0
        while d < self.end_ms:
            a, b = d + int(first_hour * HOUR), d + int(last_hour * HOUR)
            if a >= self.start_ms and b <= self.end_ms:
                days.append(d)
            d += DAY
        if not days:
            d = day0 if day0 + int(first_hour * HOUR) >= self.start_ms else day0 + DAY
            days.append(d)
        d = r.choice(days)
        return d + r.randint(int(first_hour * HOUR), int(last_hour * HOUR) - 1)
