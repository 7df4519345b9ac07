"""`GET /alerts/stream`: live alerts, resuming with Last-Event-ID, gaps, filters; the
`cep alerts tail` client and the example forwarder."""

from __future__ import annotations

import io
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from live_server import live_server
from service_helpers import CARD_TESTING, T0, card_events, make_settings

from service.alerts_tail import tail_sse
from service.api.app import create_app
from service.api.sse import SseEvent, parse_sse
from service.config import ApiConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import alert_forwarder


class Reader:
    """Follows the SSE stream in a thread; events arrive on `events`."""

    def __init__(self, url: str, headers: dict[str, str] | None = None,
                 params: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[SseEvent] = queue.Queue()
        self.url, self.headers, self.params = url, headers or {}, params or {}
        self.client = httpx.Client(timeout=30)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.client.stream("GET", self.url + "/alerts/stream", headers=self.headers,
                                    params=self.params) as r:
                for ev in parse_sse(r.iter_lines()):
                    self.events.put(ev)
        except Exception:  # closed by stop()
            return

    def stop(self) -> None:
        self.client.close()
        self.thread.join(10)

    def alerts(self, n: int, timeout: float = 20) -> list[SseEvent]:
        out: list[SseEvent] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if ev.event != "retry":
                out.append(ev)
        return out

    def nothing_more(self, wait: float = 0.5) -> bool:
        time.sleep(wait)
        return all(ev.event == "retry" for ev in list(self.events.queue))


def wait_for(cond: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@contextmanager
def reading(app: FastAPI, url: str, **kw: Any) -> Iterator[Reader]:
    hub = app.state.service.hub
    before = hub.subscribers
    r = Reader(url, **kw)
    r.thread.start()
    wait_for(lambda: hub.subscribers > before)  # from now on nothing is missed
    try:
        yield r
    finally:
        r.stop()
        wait_for(lambda: hub.subscribers <= before)


def incidents(http: httpx.Client, first: int, n: int) -> None:
    events: list[dict[str, Any]] = []
    for i in range(first, first + n):
        events += card_events(f"c{i}", T0 + i * 1_000_000, prefix=f"i{i}-")
    events.append({"card_id": "zz", "type": "x", "ts": T0 + (first + n) * 1_000_000})
    r = http.post("/events", json=events)
    assert r.json()["alerts"] == n, r.text


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FastAPI, str, httpx.Client]]:
    app = create_app(make_settings(tmp_path), tick_s=0.05, sse_heartbeat_s=0.2)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.put("/patterns/card_testing", content=CARD_TESTING).status_code == 201
        yield app, url, http


def test_stream_receives_alerts_and_resumes(
    served: tuple[FastAPI, str, httpx.Client],
) -> None:
    app, url, http = served
    with reading(app, url) as r:
        incidents(http, 0, 2)
        evs = r.alerts(2)
        assert [(e.event, e.id) for e in evs] == [("alert", "1"), ("alert", "2")]
        assert [orjson.loads(e.data)["key"] for e in evs] == ["c0", "c1"]
    # while no one listens
    incidents(http, 10, 2)
    with reading(app, url, headers={"Last-Event-ID": "2"}) as r:
        backlog = r.alerts(2)
        assert [e.id for e in backlog] == ["3", "4"]
        incidents(http, 20, 1)
        (live,) = r.alerts(1)
        assert live.id == "5"
        assert r.nothing_more()
    # query parameter form, and a filter
    with reading(app, url, params={"after": "3", "key": "c11"}) as r:
        (only,) = r.alerts(1)
        assert (only.id, orjson.loads(only.data)["key"]) == ("4", "c11")
        assert r.nothing_more()


def test_gap_when_the_buffer_no_longer_has_them(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, api=ApiConfig(recent_alerts=2)), tick_s=0.05,
                     sse_heartbeat_s=0.2)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        http.put("/patterns/card_testing", content=CARD_TESTING)
        incidents(http, 0, 4)
        with reading(app, url, headers={"Last-Event-ID": "1"}) as r:
            gap, a3, a4 = r.alerts(3)
            assert gap.event == "gap" and orjson.loads(gap.data) == {"from": 2, "to": 2}
            assert [a3.id, a4.id] == ["3", "4"]
        # an id from before a restart of the service (larger than any now): all of them
        with reading(app, url, headers={"Last-Event-ID": "99"}) as r:
            gap, a3, a4 = r.alerts(3)
            assert orjson.loads(gap.data) == {"from": 1, "to": 2}
            assert [a3.id, a4.id] == ["3", "4"]


def test_filters_and_heartbeats(served: tuple[FastAPI, str, httpx.Client]) -> None:
    app, url, http = served
    with reading(app, url, params={"pattern": "other"}) as r:
        incidents(http, 0, 1)
        time.sleep(0.6)
        kinds = {e.event for e in list(r.events.queue)}
        assert "alert" not in kinds
    with reading(app, url, params={"severity": "high", "key": "c5"}) as r:
        incidents(http, 4, 2)
        (ev,) = r.alerts(1)
        assert orjson.loads(ev.data)["key"] == "c5"


def test_bad_last_event_id_is_422(client: TestClient) -> None:
    r = client.get("/alerts/stream", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422


def test_tail_prints_alerts(served: tuple[FastAPI, str, httpx.Client]) -> None:
    app, url, http = served
    out = io.StringIO()
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(
        tail_sse(url, {"pattern": "card_testing"}, out, limit=2)))
    hub = app.state.service.hub
    th.start()
    wait_for(lambda: hub.subscribers > 0)
    incidents(http, 0, 3)
    th.join(20)
    assert result == [0]
    lines = out.getvalue().splitlines()
    assert [orjson.loads(x)["key"] for x in lines] == ["c0", "c1"]


def test_tail_reconnects_with_last_event_id() -> None:
    seen_ids: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_ids.append(request.headers.get("last-event-id"))
        n = len(seen_ids)
        body = f"retry: 10\n\nid: {n}\nevent: alert\ndata: {{\"n\": {n}}}\n\n"
        return httpx.Response(200, content=body.encode(),
                              headers={"content-type": "text/event-stream"})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    out = io.StringIO()
    assert tail_sse("http://svc", {}, out, limit=3, client=client,
                    sleep=lambda s: None) == 0
    assert seen_ids == [None, "1", "2"]
    assert out.getvalue().splitlines() == ['{"n": 1}', '{"n": 2}', '{"n": 3}']


def test_tail_stops_on_client_errors() -> None:
    client = httpx.Client(transport=httpx.MockTransport(
        lambda req: httpx.Response(404, text="nope")))
    assert tail_sse("http://svc", {}, io.StringIO(), client=client) == 1


def test_parse_sse() -> None:
    lines = ["retry: 5", "", ": comment", "id: 7", "event: alert", "data: a", "data: b", "",
             "data: plain", ""]
    assert list(parse_sse(lines)) == [
        SseEvent("retry", "", None, 5), SseEvent("alert", "a\nb", "7"),
        SseEvent("message", "plain", "7"),
    ]


def test_example_forwarder_is_exact_across_restarts(tmp_path: Path) -> None:
    case_file = tmp_path / "cases.jsonl"
    state_dir = tmp_path / "fwd"

    def run_forwarder(url: str, n: int, app: FastAPI) -> threading.Thread:
        def go() -> None:
            state = alert_forwarder.State(state_dir)
            sink = alert_forwarder.CaseFile(case_file)
            try:
                alert_forwarder.forward(url, state, sink, max_alerts=n)
            finally:
                sink.close()
                state.close()

        hub = app.state.service.hub
        wait_for(lambda: hub.subscribers == 0)  # the previous forwarder has gone
        th = threading.Thread(target=go, daemon=True)
        th.start()
        wait_for(lambda: hub.subscribers > 0 or not th.is_alive())
        return th

    def service(tag: str) -> FastAPI:
        return create_app(make_settings(tmp_path / tag), tick_s=0.05, sse_heartbeat_s=0.2)

    app = service("a")
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        http.put("/patterns/card_testing", content=CARD_TESTING)
        th = run_forwarder(url, 2, app)
        incidents(http, 0, 2)
        th.join(20)
        assert not th.is_alive()
        incidents(http, 2, 1)  # while the forwarder is down
        th = run_forwarder(url, 1, app)  # resumes after id 2: gets id 3
        th.join(20)
        assert not th.is_alive()
    assert (state_dir / "last_event_id").read_text() == "3"
    # a new service instance replays the same incidents (same alert_ids, new stream
    # ids), then a new one: only the new one is forwarded
    app = service("b")
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        http.put("/patterns/card_testing", content=CARD_TESTING)
        th = run_forwarder(url, 1, app)
        incidents(http, 0, 3)
        incidents(http, 7, 1)
        th.join(20)
        assert not th.is_alive()
    keys = [orjson.loads(x)["key"] for x in case_file.read_bytes().splitlines()]
    assert keys == ["c0", "c1", "c2", "c7"]


def test_tail_without_a_server_names_the_url_and_gives_up(
        capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    slept: list[float] = []
    assert tail_sse("http://127.0.0.1:9", {}, io.StringIO(), client=client,
                    sleep=slept.append, retries=3) == 1
    err = capsys.readouterr().err
    assert err.count("cannot reach http://127.0.0.1:9/alerts/stream") == 4
    assert "gave up after 4 attempts" in err and "is `cep serve` running" in err
    assert len(slept) == 3
