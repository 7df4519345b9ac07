"""No silent stall (issue 14, item 1): the progress watchdog turns /ready and
`cep_stalled` red when input waits and nothing is committed, /health red when the
runner's loop is wedged, and stops a runner stalled for `stall_exit_ms`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.kafka.checkpoint import KafkaRunnerError
from service.kafka.stall import StallCheck
from service.kafka.watchdog import Progress


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_stalled_only_when_input_waits_and_nothing_is_committed() -> None:
    clock = FakeClock()
    p = Progress(stall_after_s=60, wedged_after_s=300, clock=clock)
    p.start()
    p.beat(None)
    clock.t += 1000
    assert p.stalled() is None  # nothing waiting: idle, not stalled
    p.beat("3 records read since the last checkpoint")
    clock.t += 30
    p.committed()
    clock.t += 50
    p.beat("3 records read since the last checkpoint")
    assert p.stalled() is None  # committed 50 s ago
    clock.t += 11
    p.beat("t[0] is 5 records behind")
    reason = p.stalled()
    assert reason is not None and "t[0] is 5 records behind" in reason
    p.committed()
    assert p.stalled() is None


def test_wedged_when_the_loop_does_not_come_round() -> None:
    clock = FakeClock()
    p = Progress(stall_after_s=60, wedged_after_s=300, clock=clock)
    assert p.wedged() is None  # not started
    p.start()
    clock.t += 299
    assert p.wedged() is None
    clock.t += 2
    assert "wedged" in (p.wedged() or "")
    p.beat(None)
    assert p.wedged() is None


def _runner(clock: FakeClock, **kw: Any) -> SimpleNamespace:
    r = SimpleNamespace(progress=Progress(60, 300, clock=clock), assigned={("t", 0)},
                        positions={("t", 0): 10}, consumed_since=0, consumer=None,
                        k=SimpleNamespace(stall_exit_ms=300_000))
    r.__dict__.update(kw)
    r.progress.start()
    return r


def test_a_runner_without_partitions_is_stalled_and_stops_after_stall_exit() -> None:
    """After a broker restart the consumer was fenced and the runner went on with no
    partitions, /ready 200, forever."""
    clock = FakeClock()
    r = _runner(clock, assigned=set())
    check = StallCheck(r, clock=clock)  # type: ignore[arg-type]
    check.beat()
    clock.t += 61
    check.beat()
    assert "no partition assigned" in (r.progress.stalled() or "")
    clock.t += 240
    with pytest.raises(KafkaRunnerError, match="stall_exit_ms"):
        check.beat()


def test_ready_and_metrics_turn_red_and_health_fails_when_wedged(client: TestClient) -> None:
    clock = FakeClock()
    svc = client.app.state.service  # type: ignore[attr-defined]
    svc.progress = p = Progress(60, 300, clock=clock)
    p.start()
    p.beat("12 records read since the last checkpoint")
    assert client.get("/ready").status_code == 200
    clock.t += 61
    r = client.get("/ready")
    assert r.status_code == 503 and "stalled" in r.json()["detail"]
    assert "cep_stalled 1.0" in client.get("/metrics").text
    assert client.get("/health").status_code == 200
    clock.t += 300
    r = client.get("/health")
    assert r.status_code == 503 and "wedged" in r.json()["detail"]
    p.beat(None)
    p.committed()
    assert client.get("/ready").status_code == 200
    assert client.get("/health").status_code == 200
    assert "cep_stalled 0.0" in client.get("/metrics").text
