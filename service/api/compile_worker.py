"""The compile server of `service.api.compile_guard`: `python -m service.api.compile_worker`.

A single-threaded process that has the compiler imported. It reads one JSON request per
line on stdin (`{"source": TEXT, "models": {NAME: [FEATURE, ...]}, "memory_mb": N,
"timeout_s": T}`), forks a child per request (a trial costs milliseconds, not an
interpreter start), and answers one JSON line `{"status": S}` on stdout:

- `ok`: the text compiled, or was refused with diagnostics (the API reports those);
- `memory`: the child ran out of its `RLIMIT_AS`;
- `timeout`: the child used up its `RLIMIT_CPU` or the wall-clock time and was killed;
- `failed`: the child died another way.

Forking is safe here because this process has one thread. Nothing but the status comes
back from the child.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from collections.abc import Mapping, Sequence

import orjson

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.errors import PatternError

_MEMORY_EXIT = 3


def _compile(source: str, models: Mapping[str, Sequence[str]], memory_mb: int,
             cpu_s: int) -> int:
    """In the forked child: the exit status."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    try:
        plans = [compile_pattern(p) for p in load_source(source, models=models)]
        del plans
    except PatternError:
        pass
    except MemoryError:
        return _MEMORY_EXIT
    return 0


def trial(req: Mapping[str, object]) -> str:
    timeout_s = float(req["timeout_s"])  # type: ignore[arg-type]
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            code = _compile(str(req["source"]), req["models"],  # type: ignore[arg-type]
                            int(req["memory_mb"]), max(1, int(timeout_s + 0.999)))  # type: ignore[call-overload]
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return "ok" if code == 0 else "memory" if code == _MEMORY_EXIT else "failed"
    sig = os.WTERMSIG(status)
    return "timeout" if sig in (signal.SIGXCPU, signal.SIGKILL) else "failed"


def main() -> int:
    # build the parser and warm the compiler once, here: every forked child inherits them
    for p in load_source("pattern warm { from s key k match a then b{2} then not c within 1s }"):
        compile_pattern(p)
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        status = trial(orjson.loads(line))
        sys.stdout.buffer.write(orjson.dumps({"status": status}) + b"\n")
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
