"""A real `cep serve` process for the browser tests (and the screenshot script)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
TOKEN = "console-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Server:
    url: str
    root: Path
    proc: subprocess.Popen[bytes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def cep_serve(root: Path, patterns: list[str] = ()) -> Iterator[Server]:  # type: ignore[assignment]
    """`cep serve` (embedded mode, with an API token) over `root`, with the repo's
    models and the named example patterns; stopped with SIGTERM."""
    (root / "pats").mkdir(parents=True, exist_ok=True)
    for name in patterns:
        shutil.copy(REPO / "patterns" / f"{name}.cep", root / "pats")
    shutil.copytree(REPO / "models" / "txn_risk", root / "models" / "txn_risk")
    cfg = root / "cep.toml"
    cfg.write_text(
        f'patterns_dir = "{root / "pats"}"\ndata_dir = "{root / "var"}"\n'
        f'models_dir = "{root / "models"}"\n'
        f'alerts_file = "{root / "out" / "alerts.jsonl"}"\n'
        f'dead_letters_file = "{root / "out" / "dead.jsonl"}"\n'
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEP_")}
    env["CEP_API_TOKEN"] = TOKEN
    log = open(root / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--config", str(cfg),
         "--port", str(port)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError((root / "serve.log").read_text())
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("cep serve did not start")
            time.sleep(0.1)
        yield Server(url, root, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
