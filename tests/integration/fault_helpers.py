"""Jepsen-style accounting for the fault suite (tests/integration/test_faults.py).

Every input record ends up as exactly one of: an event of the alerts (or an event the
patterns did not need: irrelevant or late, which a backtest decides the same way),
or a dead letter with its reason. So the check of a run is:

- the alert ids read back (read_committed) against a backtest over the same valid
  input: `lost` (expected, not there), `false` (there, not expected), `duplicated`
  (the same id more than once: allowed at-least-once, never exactly-once);
- the dead letters against the poison records put in: each with its reason.

`report()` prints one line per run (`FAULT name mode runs lost duplicated false`) and
appends it to $CEP_FAULT_REPORT when that is set, for the closing note of a change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kafka_runner_helpers import Record, RunnerProcess, wait_for


@dataclass
class Account:
    fault: str
    mode: str
    runs: int
    expected: int
    got: int
    lost: int
    duplicated: int
    false: int
    dead_letters: dict[str, int]


def account(fault: str, mode: str, expected: Sequence[str], got: Sequence[str],
            dead: Sequence[Record], runs: int = 1) -> Account:
    exp, have = set(expected), set(got)
    reasons = Counter(r.headers.get("cep.reason", "?") for r in dead)
    acc = Account(fault, mode, runs, len(exp), len(got), len(exp - have),
                  len(got) - len(have), len(have - exp), dict(reasons))
    report(acc)
    return acc


def report(acc: Account) -> None:
    line = (f"FAULT {acc.fault} {acc.mode} runs={acc.runs} expected={acc.expected} "
            f"got={acc.got} lost={acc.lost} duplicated={acc.duplicated} false={acc.false} "
            f"dead_letters={acc.dead_letters}")
    print(line)
    path = os.environ.get("CEP_FAULT_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(asdict(acc)) + "\n")


class Supervisor:
    """Restarts `python -m service.kafka.runner` whenever it exits non-zero, like
    systemd's `Restart=on-failure` (what docs/operations.md asks of a deployment)."""

    def __init__(self, cfg: Path, log: Path) -> None:
        self.runner = RunnerProcess(cfg, log)
        self.restarts = 0
        self.exits: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self.runner.start()
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                proc = self.runner.proc
                if self._stop.is_set() or proc is None or proc.poll() is None:
                    continue
                self.exits.append(proc.returncode)
                if proc.returncode == 0:
                    return
                self.restarts += 1
                self.runner.start()

    def kill(self) -> None:
        """kill -9, and the restart a supervisor would do."""
        with self._lock:
            self.runner.kill()
            self.exits.append(-9)
            self.restarts += 1
            self.runner.start()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the current process runs and has its partitions."""
        def ready() -> bool:
            with self._lock:
                return self.runner.alive() and " assigned " in self.runner.log_text(
                    ).rsplit("---- start ----", 1)[-1]
        wait_for(ready, timeout, what="the supervised runner to be ready")

    def stop(self) -> int:
        """SIGTERM to the current (ready) process; its exit code."""
        self.wait_ready()
        with self._lock:
            self._stop.set()
            code = self.runner.terminate()
        self._thread.join(5)
        return code

    def halt(self) -> None:
        """Stop supervising and kill what runs (test clean-up)."""
        with self._lock:
            self._stop.set()
            if self.runner.alive():
                self.runner.kill()
        self._thread.join(5)


def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` at `path`; None when done, else why it cannot be."""
    if os.geteuid() != 0:
        return "not running as root: cannot mount a small tmpfs for the full-disk fault"
    if not sys.platform.startswith("linux"):
        return "the full-disk fault needs Linux (tmpfs)"
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return f"cannot mount a tmpfs: {res.stderr.strip() or res.returncode}"
    return None


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill(path: Path) -> Path:
    """Fill the file system of `path` up to the last byte; returns the filler file."""
    filler = path / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:  # unbuffered: the last write fails here
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(chunk[:size])
            except OSError:
                continue
    return filler


__all__ = ["Account", "Supervisor", "account", "fill", "mount_tmpfs", "umount"]
