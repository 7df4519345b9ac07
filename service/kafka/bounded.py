"""Calls with a real time bound.

librdkafka's own timeouts are not always kept: after a broker restart
`send_offsets_to_transaction(..., 60)` was seen blocking for over four minutes. A
bounded call runs in a helper thread; when it has not returned `grace_s` after its own
timeout, the caller gets `CallTimedOut` and goes on (the runner then recreates the
client: the stuck call's client is abandoned, and `init_transactions` of the new
producer fences it). The helper thread is a daemon: it cannot keep the process alive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CallTimedOut(Exception):
    """A bounded call did not return in time; its client must not be used again."""


def bounded(fn: Callable[[], T], seconds: float, what: str) -> T:
    """`fn()`, or `CallTimedOut` after `seconds` (its exception, if it raised one)."""
    box: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"bounded:{what}", daemon=True).start()
    if not done.wait(seconds):
        raise CallTimedOut(f"{what} did not return within {seconds:.0f}s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
