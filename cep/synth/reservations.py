"""Per-key time intervals that background traffic must keep out of.

An injected incident (or near miss) owns its card or user for its duration plus a guard
at least as long as the longest window of the patterns that key reads, so background
events can neither complete nor break it. Background events that land inside a
reservation are moved to another key.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_TS_BITS = 36  # ~795 days of milliseconds after the base time


class Reservations:
    def __init__(self, base_ms: int) -> None:
        self._base = base_ms
        self._by_key: dict[int, list[tuple[int, int]]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    def keys(self) -> list[int]:
        return sorted(self._by_key)

    def is_free(self, key: int, lo: int, hi: int) -> bool:
        return all(hi < a or lo > b for a, b in self._by_key.get(key, ()))

    def add(self, key: int, lo: int, hi: int) -> None:
        self._by_key.setdefault(key, []).append((lo, hi))

    def _combined(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        los: list[int] = []
        his: list[int] = []
        for key in sorted(self._by_key):
            for lo, hi in sorted(self._by_key[key]):
                los.append(self._pack(key, lo))
                his.append(self._pack(key, hi))
        return np.array(los, dtype=np.int64), np.array(his, dtype=np.int64)

    def _pack(self, key: int, ts: int) -> int:
        rel = min(max(ts - self._base, 0), (1 << _TS_BITS) - 1)
        return (key << _TS_BITS) | rel

    def conflicts(
        self, keys: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Mask of events (key, ts) that fall inside a reservation of their key."""
        lo, hi = self._combined()
        if len(lo) == 0 or len(keys) == 0:
            return np.zeros(len(keys), dtype=np.bool_)
        rel = np.clip(ts - self._base, 0, (1 << _TS_BITS) - 1)
        packed = (keys.astype(np.int64) << _TS_BITS) | rel
        idx = np.searchsorted(lo, packed, side="right") - 1
        ok = idx >= 0
        return ok & (packed <= hi[np.maximum(idx, 0)])
