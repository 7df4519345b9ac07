"""Durations as written by people: 250ms, 30s, 10m, 2h, 7d (or plain milliseconds)."""

from __future__ import annotations

UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str | int) -> int:
    """-> int milliseconds. Raises ValueError with what is accepted."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration is >= 0")
        return text
    t = str(text).strip()
    for unit in ("ms", "s", "m", "h", "d"):
        if t.endswith(unit) and t[: -len(unit)].isdigit():
            return int(t[: -len(unit)]) * UNITS[unit]
    if t.isdigit():
        return int(t)
    raise ValueError(f"not a duration: {text!r} (use 250ms, 30s, 10m, 2h, 7d)")
