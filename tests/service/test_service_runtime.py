"""How the service runs: Kafka mode wiring (with a fake runner), metrics hooks, `cep
serve` start-up errors, and a real `cep serve` process stopped with SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from service_helpers import BROKEN, CARD_TESTING, T0, card_events, make_settings

from cep.runtime.engine import Alert, Engine
from service import metrics as service_metrics
from service.api.app import create_app
from service.config import KafkaConfig, Settings
from service.control import Control
from service.kafka.tasks import TaskRow, TaskTable
from service.main import serve

ROOT = Path(__file__).resolve().parents[2]


def fake_runner(gate: threading.Event) -> Any:
    """A stand-in for service.kafka.runner.run_kafka: becomes ready when `gate` is set,
    then runs control functions and turns every pending swap into a batch boundary."""

    def run_kafka(settings: Settings, engine: Engine, control: Control,
                  on_alerts: Any, stop: threading.Event, ready: threading.Event,
                  tasks: TaskTable) -> None:
        tasks.tasks_total = 6
        tasks.set(TaskRow(4, "restoring", [{"topic": "transactions", "partition": 4}],
                          None, {"start": 0, "end": 100, "records": 40, "done": False}))
        gate.wait(30)
        tasks.set(TaskRow(4, "running", [{"topic": "transactions", "partition": 4}],
                          0, {"start": 0, "end": 100, "records": 100, "done": True}))
        ready.set()
        while not stop.is_set():
            control.run_pending(engine)
            res = engine.process([*card_events("k1", T0), {"card_id": "z", "ts": T0 + 60000}])
            if res.alerts:
                on_alerts(res.alerts)
            time.sleep(0.01)

    return run_kafka


# a fake runner and no broker: no control topic either (kafka.share_changes off)
NO_BROKER = KafkaConfig(bootstrap_servers="127.0.0.1:1", share_changes=False)


def test_kafka_mode_is_wired_through_run_kafka(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import service.kafka.runner

    gate = threading.Event()
    monkeypatch.setattr(service.kafka.runner, "run_kafka", fake_runner(gate))
    settings = make_settings(tmp_path, kafka=NO_BROKER)
    assert not settings.embedded
    with TestClient(create_app(settings)) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["mode"] == "kafka"
        assert r.json()["restoring"] == [4]
        assert "restoring task(s) 4 from the changelog" in r.json()["detail"]
        t = c.get("/tasks").json()
        assert t["tasks_total"] == 6 and t["tasks"][0]["restore"]["records"] == 40
        assert c.put("/patterns/card_testing", content=CARD_TESTING).status_code == 503
        gate.set()
        deadline = time.monotonic() + 20
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.put("/patterns/card_testing", content=CARD_TESTING).status_code == 201
        assert [(t["task"], t["state"]) for t in c.get("/tasks").json()["tasks"]] == [
            (4, "running")]
        deadline = time.monotonic() + 20
        while not c.get("/alerts").json()["alerts"]:  # the runner's alerts reach the hub
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = c.post("/events", json=[{"ts": T0}])
        assert r.status_code == 409 and "Kafka" in r.json()["detail"]
        lag = service_metrics.active()
        assert lag is not None
        lag.set_consumer_lag("transactions", 3, 42)
        lag.observe_batch("transactions", 10, 0.001)
        text = c.get("/metrics").text
        assert 'cep_consumer_lag{partition="3",topic="transactions"} 42.0' in text
        assert 'cep_events_in_total{source="transactions"} 10.0' in text
    assert service_metrics.active() is None
    assert not (tmp_path / "out" / "alerts.jsonl").exists()  # Kafka mode: alerts go to Kafka


def test_a_dead_kafka_runner_is_not_ready(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import service.kafka.runner

    def broken(*args: Any) -> None:
        raise RuntimeError("no broker")

    monkeypatch.setattr(service.kafka.runner, "run_kafka", broken)
    settings = make_settings(tmp_path, kafka=NO_BROKER)
    with TestClient(create_app(settings)) as c:
        deadline = time.monotonic() + 10
        while "no broker" not in (c.get("/ready").json()["detail"] or ""):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert c.app.state.service.kafka_failed  # type: ignore[attr-defined]


def test_engine_alerts_are_counted_by_severity(client: TestClient) -> None:
    hub = client.app.state.service.hub  # type: ignore[attr-defined]
    hub.publish([Alert("t", "k", {"pattern": "p", "severity": "low", "key": "k"})])
    assert 'cep_alerts_total{pattern="p",severity="low"} 1.0' in client.get("/metrics").text
    (env,) = client.get("/alerts").json()["alerts"]
    assert env == {"id": 1, "topic": "t", "alert": {"pattern": "p", "severity": "low",
                                                     "key": "k"}}


def args(config: Path, **kw: Any) -> argparse.Namespace:
    return argparse.Namespace(config=str(config), host=kw.get("host"), port=kw.get("port"))


def test_serve_reports_start_up_errors(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = [")
    assert serve(args(bad)) == 2
    assert "invalid TOML" in capsys.readouterr().err
    (tmp_path / "pats").mkdir()
    (tmp_path / "pats" / "broken.cep").write_text(BROKEN)
    cfg = tmp_path / "cep.toml"
    cfg.write_text(f'patterns_dir = "{tmp_path / "pats"}"\ndata_dir = "{tmp_path / "var"}"\n'
                   f'models_dir = "{tmp_path / "models"}"\n')
    assert serve(args(cfg)) == 1
    err = capsys.readouterr().err
    assert "broken.cep:4:" in err and "did not start" in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_cep_serve_process_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "cep.toml"
    cfg.write_text(
        f'patterns_dir = "{tmp_path / "pats"}"\ndata_dir = "{tmp_path / "var"}"\n'
        f'models_dir = "{tmp_path / "models"}"\n'
        f'alerts_file = "{tmp_path / "out" / "alerts.jsonl"}"\n'
        f'dead_letters_file = "{tmp_path / "out" / "dead.jsonl"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEP_")}
    env["CEP_API_TOKEN"] = "tok"
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--config", str(cfg), "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "cep serve did not start"
            time.sleep(0.1)
        auth = {"Authorization": "Bearer tok"}
        r = httpx.put(url + "/patterns/card_testing", content=CARD_TESTING, headers=auth)
        assert r.status_code == 201
        assert httpx.put(url + "/patterns/x", content=CARD_TESTING).status_code == 401
        events = [*card_events("c1", T0), {"card_id": "z", "ts": T0 + 60000}]
        r = httpx.post(url + "/events", json=events, headers=auth)
        assert r.json()["alerts"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out
    assert "Finished server process" in out
    (line,) = (tmp_path / "out" / "alerts.jsonl").read_bytes().splitlines()
    assert orjson.loads(line)["pattern"] == "card_testing"
    assert (tmp_path / "var" / "patterns" / "card_testing.cep").exists()


def test_cep_serve_stopped_while_starting_exits_cleanly(tmp_path: Path) -> None:
    """SIGTERM while `cep serve` is still importing and loading (before uvicorn has its
    own handlers): the start-up stops without serving and the command exits 0 (it
    died with -15, the default action, when a scale-out test stopped an instance that
    was still starting)."""
    cfg = tmp_path / "cep.toml"
    cfg.write_text(
        f'patterns_dir = "{ROOT / "patterns"}"\ndata_dir = "{tmp_path / "var"}"\n'
        f'models_dir = "{ROOT / "models"}"\nalerts_file = "{tmp_path / "a.jsonl"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEP_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--config", str(cfg), "--port",
         str(free_port()), "--log-level", "debug"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen: list[bytes] = []
    try:
        # the first line the start-up logs, right after installing its handler and
        # before importing the server (which takes far longer than this test's reaction)
        for line in proc.stdout:
            seen.append(line)
            if b"start-up: SIGTERM and SIGINT now stop the service cleanly" in line:
                break
            assert b"Started server process" not in line, b"".join(seen).decode()
        else:
            raise AssertionError(b"".join(seen).decode())
        proc.send_signal(signal.SIGTERM)
        out = b"".join(seen).decode() + proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "signal 15 during start-up" in out
    assert "Started server process" not in out  # it never served
    assert "Traceback" not in out


def test_cep_serve_json_logs_at_a_level(tmp_path: Path) -> None:
    """`--log-format json`: every line of the log is one JSON object (uvicorn's too);
    `--log-level warning` leaves out the info lines."""
    port = free_port()
    cfg = tmp_path / "cep.toml"
    cfg.write_text(
        f'patterns_dir = "{tmp_path / "pats"}"\ndata_dir = "{tmp_path / "var"}"\n'
        f'models_dir = "{tmp_path / "models"}"\nalerts_file = "{tmp_path / "a.jsonl"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEP_")}
    outputs = []
    for level in ("info", "warning"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--config", str(cfg), "--port",
             str(port), "--log-format", "json", "--log-level", level],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "cep serve did not start"
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            outputs.append(proc.communicate(timeout=60)[0].decode())
        assert proc.returncode == 0, outputs[-1]
    info = [orjson.loads(line) for line in outputs[0].splitlines()]
    assert {r["level"] for r in info} == {"info"}
    assert all(set(r) == {"time", "level", "logger", "message"} for r in info)
    messages = [r["message"] for r in info]
    assert any(m.startswith("cep embedded mode on http://127.0.0.1") for m in messages)
    assert "Finished server process" in " ".join(messages)
    assert {"cep.service", "uvicorn.error"} <= {r["logger"] for r in info}
    assert outputs[1].strip() == ""  # nothing at warning level on a clean start and stop
