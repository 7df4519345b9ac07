"""Compiling posted pattern text with a time and memory bound.

The checker refuses patterns whose NFA would be too large (`cep.dsl.check_size`); this
is the second fence, for whatever that estimate does not see. Before the API compiles
text it received (PUT /patterns/NAME, POST /patterns/validate, POST /patterns/test),
a child process parses, checks and compiles it under `RLIMIT_AS`
(`api.compile_memory_mb`) and `RLIMIT_CPU`, with a wall-clock timeout
(`api.compile_timeout_s`). Only when the child finished does the API compile the
text itself; a child killed by a limit gives a 422 with a diagnostic instead, and
the API process never spent the time or the memory. The children are forked by a
small compile server (`service/api/compile_worker.py`, started at first use) that has
the compiler imported, so a trial costs milliseconds. One trial runs at a time; a
request that waits longer than the timeout for its turn gets a 503.

Nothing comes back from the child but its exit status.
"""

from __future__ import annotations

import atexit
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

import orjson


class CompileBudgetExceeded(Exception):
    """The text could not be compiled within the time or memory bound."""


class CompileBusy(Exception):
    """The compile server stayed busy for the whole timeout."""


class _Server:
    """The `python -m service.api.compile_worker` process, started at first use and again
    whenever it died; one request at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.api.compile_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        return self.proc

    def close(self) -> None:
        with self.lock:
            self._stop()

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()
            self.proc = None

    def ask(self, request: bytes, timeout_s: float) -> str:
        if not self.lock.acquire(timeout=timeout_s):
            raise CompileBusy(f"the compile server stayed busy for {timeout_s:g}s")
        try:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request + b"\n")
                proc.stdin.flush()
            except BrokenPipeError:
                self._stop()
                return "failed"
            # the server kills the child at timeout_s; wait a little longer for its answer
            deadline = time.monotonic() + timeout_s + 30
            fd = proc.stdout.fileno()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._stop()
                    return "timeout"
                ready, _, _ = select.select([fd], [], [], left)
                if ready:
                    line = proc.stdout.readline()
                    if not line:  # the server died
                        self._stop()
                        return "failed"
                    status: str = orjson.loads(line)["status"]
                    return status
        finally:
            self.lock.release()


_server = _Server()
atexit.register(_server.close)


def trial_compile(source: bytes, models: Mapping[str, Sequence[str]], *,
                  timeout_s: float, memory_mb: int) -> None:
    """Return when `source` compiles (or fails with diagnostics, which the caller then
    reports as usual) within the bounds; raise `CompileBudgetExceeded` otherwise."""
    request = orjson.dumps({
        "source": source.decode("utf-8", "replace"),
        "models": {k: list(v) for k, v in models.items()},
        "memory_mb": memory_mb, "timeout_s": timeout_s,
    })
    status = _server.ask(request, timeout_s)
    if status == "ok":
        return
    if status == "timeout":
        raise CompileBudgetExceeded(
            f"compiling took longer than {timeout_s:g}s (api.compile_timeout_s)")
    if status == "memory":
        raise CompileBudgetExceeded(
            f"compiling needed more than {memory_mb} MB (api.compile_memory_mb)")
    raise CompileBudgetExceeded("the compile process failed")


def check_compile_cost(source: bytes, models: Mapping[str, Sequence[str]], *,
                       timeout_s: float, memory_mb: int) -> None:
    """`trial_compile` for the API: a `PatternError` (E902, at the first line) when the
    bound is exceeded, an HTTP 503 when no compile slot was free."""
    from fastapi import HTTPException

    from cep.dsl.ast import Span
    from cep.dsl.diagnostics import diagnostic
    from cep.errors import PatternError

    try:
        trial_compile(source, models, timeout_s=timeout_s, memory_mb=memory_mb)
    except CompileBusy as exc:
        raise HTTPException(503, f"{exc}; try again", headers={"Retry-After": "5"}) from None
    except CompileBudgetExceeded as exc:
        text = source.decode("utf-8", "replace")
        raise PatternError([diagnostic(
            text, None, Span(1, 1, 1, 2, 0, 1), f"the pattern text cannot be compiled "
            f"within the service's bounds: {exc}", "E902",
            "split the file into smaller patterns or lower quantifier bounds",
        )]) from None
