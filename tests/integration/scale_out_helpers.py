"""Several real `cep serve` processes in one consumer group, for the scale-out tests
(test_scale_out, test_repartition, test_hotload_kafka): one `Instance` per process,
6 input partitions."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from kafka_runner_helpers import REPO, write_config

PARTITIONS = 6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def partition_of(ev: dict[str, Any]) -> int:
    key = ev.get("card_id") or ev.get("order_id") or ""
    return sum(key.encode()) % PARTITIONS


class Instance:
    """One `cep serve` process: its own config (same group, topics and patterns; its
    own state_dir, transactional id, group.instance.id and port)."""

    def __init__(self, name: str, tmp: Path, bootstrap: str, topic: str, eos: bool) -> None:
        self.name = name
        self.dir = tmp / name
        self.port = free_port()
        tag = topic.rsplit("-", 1)[-1]
        cfg = write_config(
            self.dir, bootstrap, topic, exactly_once=eos, checkpoint="200ms",
            extra_kafka='transaction_timeout_ms = "10s"',
            consumer={"group.instance.id": f"{name}-{tag}", "session.timeout.ms": "6000"},
        )
        text = cfg.read_text().replace(f'transactional_id = "txn-{tag}"',
                                       f'transactional_id = "txn-{tag}-{name}"')
        cfg.write_text(text + f"\n[api]\nport = {self.port}\n")
        self.cfg = cfg
        self.log = self.dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "CEP_DATA_DIR": str(self.dir / "var"),
               "CEP_ALERTS_FILE": str(self.dir / "alerts.jsonl")}
        env.pop("CEP_KAFKA_BOOTSTRAP", None)
        with open(self.log, "ab") as f:
            f.write(b"\n---- start ----\n")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve", "--config", str(self.cfg)],
                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)

    def tasks(self) -> list[dict[str, Any]]:
        """GET /tasks (empty while the API is not up)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/tasks", timeout=2) as r:
                body: dict[str, Any] = json.loads(r.read())
        except OSError:
            return []
        return list(body["tasks"])

    def running(self) -> set[int]:
        return {t["task"] for t in self.tasks() if t["state"] == "running"}

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def covered(instances: list[Instance]) -> bool:
    """Every task runs on exactly one of these instances."""
    seen: list[int] = []
    for i in instances:
        seen += sorted(i.running())
    return sorted(seen) == list(range(PARTITIONS))
