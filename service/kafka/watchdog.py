"""The progress watchdog of the Kafka runner: no silent stall.

The runner's loop reports to a `Progress`: a heartbeat every iteration (with whether
input is waiting: records read but not committed, consumer lag, or no partitions
assigned), and every committed checkpoint. The probes read it:

- **stalled**: input has been waiting for `kafka.stall_after_ms` and nothing was
  committed in that time. `/ready` answers 503 with the reason, `cep_stalled` is 1.
  After `kafka.stall_exit_ms` of it (0: never) the runner stops with an error, so the
  process exits non-zero and its supervisor restarts it: a restart resumes from the
  last checkpoint (docs/operations.md, "Faults").
- **wedged**: the loop has not come round for `kafka.wedged_after_ms` (a call that
  never returns). `/health` answers 503, so a liveness probe restarts the process.

The service activates one `Progress` (`activate`); the runner finds it with `active()`
(a private one when it runs alone, `python -m service.kafka.runner`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Progress:
    def __init__(self, stall_after_s: float, wedged_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self.wedged_after_s = wedged_after_s
        self.clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._beat = now
        self._commit = now
        self._waiting_since: float | None = None
        self._why = ""
        self.running = False

    # -- the runner's side

    def start(self) -> None:
        with self._lock:
            now = self.clock()
            self._beat = self._commit = now
            self._waiting_since = None
            self.running = True

    def stop(self) -> None:
        self.running = False

    def beat(self, waiting: str | None = None) -> None:
        """The loop came round; `waiting` says why input is waiting (None: it is not)."""
        with self._lock:
            now = self.clock()
            self._beat = now
            if waiting is None:
                self._waiting_since = None
            elif self._waiting_since is None:
                self._waiting_since = now
            self._why = waiting or ""

    def committed(self) -> None:
        with self._lock:
            self._commit = self.clock()

    # -- the probes' side

    def stalled_for(self) -> float:
        """Seconds input has waited with nothing committed (0 when it is not)."""
        with self._lock:
            if not self.running or self._waiting_since is None:
                return 0.0
            since = max(self._waiting_since, self._commit)
            return max(0.0, self.clock() - since)

    def stalled(self) -> str | None:
        s = self.stalled_for()
        if s < self.stall_after_s:
            return None
        return (f"stalled: input waiting ({self._why}) and nothing committed for {s:.0f}s "
                f"(kafka.stall_after_ms = {self.stall_after_s * 1000:.0f})")

    def wedged(self) -> str | None:
        with self._lock:
            if not self.running:
                return None
            quiet = self.clock() - self._beat
        if quiet < self.wedged_after_s:
            return None
        return (f"wedged: the Kafka runner's loop has not come round for {quiet:.0f}s "
                f"(kafka.wedged_after_ms = {self.wedged_after_s * 1000:.0f})")


_active: Progress | None = None


def activate(progress: Progress | None) -> None:
    global _active
    _active = progress


def active() -> Progress | None:
    """The running service's watchdog (for the Kafka runner), or None."""
    return _active
