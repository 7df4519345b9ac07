"""Reading values out of events: field paths, event times, keys.

A leaf module (standard library only): the compiler's generated code (through
`cep.compiler.env`) and the runtime read events with these same functions, so an
event's field, time and key mean the same thing everywhere.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any


def path_get(d: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        if d.__class__ is not dict:
            return None
        d = d.get(p)
    return d


def to_ms(x: Any) -> int | None:
    """Event time from a field: epoch milliseconds (int/float) or an ISO-8601 string."""
    if x.__class__ is int:
        return int(x)
    if x.__class__ is float:
        if x != x or x in (math.inf, -math.inf):
            return None
        return int(x)
    if x.__class__ is str:
        try:
            dt = datetime.fromisoformat(x.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None  # naive times are ambiguous: refuse them
        return int(dt.timestamp() * 1000)
    return None


def normalise_key(k: Any) -> Any:
    """Keys are scalars; a missing, null or structured value means 'no key'."""
    if k is None or k.__class__ is dict or k.__class__ is list:
        return None
    if k.__class__ is float:
        if k != k:
            return None
        if k.is_integer():
            return int(k)  # 1.0 and 1 are one key, written as 1
    elif k.__class__ is bool:
        return "true" if k else "false"  # not the same key as 1 / 0
    return k
