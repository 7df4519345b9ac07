"""`paused_gc()`: no cyclic garbage collection while building or reading many acyclic
objects (a synthetic stream's events, a checkpoint's or a restore's key states).
Reference counting still frees them; each collection would only rescan every object
made so far (a restore of 200k keys: 1.61 s with the collector, 1.16 s without)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
