"""`POST /events` (JSON array, NDJSON, dead letters) and `GET /alerts` (filters)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from fastapi.testclient import TestClient
from service_helpers import CARD_TESTING, T0, card_events, ndjson


def test_json_array_gives_alerts(client: TestClient) -> None:
    client.put("/patterns/card_testing", content=CARD_TESTING)
    events = [*card_events("c1", T0), {"card_id": "zz", "type": "x", "ts": T0 + 60000}]
    r = client.post("/events", json=events)
    assert r.status_code == 200
    assert r.json() == {"received": 5, "accepted": 5, "dead_letters": 0, "reasons": {},
                        "errors": [], "alerts": 1}
    body = client.get("/alerts").json()
    (env,) = body["alerts"]
    assert env["id"] == 1 and body["last_id"] == 1 and body["oldest_id"] == 1
    a = env["alert"]
    assert (a["pattern"], a["key"], a["kind"], a["pattern_version"]) == (
        "card_testing", "c1", "match", 1)
    assert [e["id"] for e in a["events"]["tiny"]] == ["e0", "e1", "e2"]


def test_ndjson_with_bad_lines_never_fails(client: TestClient, tmp_path: Path) -> None:
    client.put("/patterns/card_testing", content=CARD_TESTING)
    body = (ndjson(card_events("c1", T0)[:2]) + b"not json\n\n[1, 2]\n"
            + b'{"card_id": "c1"}\n' + b'{"card_id": "c1", "ts": "yesterday"}\n')
    r = client.post("/events", content=body, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200
    out = r.json()
    assert out["received"] == 6 and out["accepted"] == 2 and out["dead_letters"] == 4
    assert out["reasons"] == {"malformed": 2, "missing_time": 1, "bad_time": 1}
    lines = {d["position"][2]: d["reason"] for d in out["errors"]}
    assert lines == {3: "malformed", 5: "malformed", 6: "missing_time", 7: "bad_time"}
    # at or before the watermark (set by the first batch): late, never dropped silently
    r = client.post("/events", content=b'{"card_id": "c1", "ts": %d}' % (T0 - 1))
    assert r.json()["reasons"] == {"late": 1}
    dead = (tmp_path / "out" / "dead-letters.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["reason"] for x in dead] == [
        "malformed", "malformed", "missing_time", "bad_time", "late"]
    assert orjson.loads(dead[0])["raw"] == "not json"  # the original text


def test_odd_bodies(client: TestClient) -> None:
    for body, received in [(b"", 0), (b"   \n\n", 0), (b"[]", 0), (b"[1, {}]", 2),
                           (b"[broken", 1), (b'{\n  "ts": 5,\n  "k": 1\n}', 1),
                           (b"\xff\xfe", 1), (b"null", 1), (b'"x"\n', 1)]:
        r = client.post("/events", content=body)
        assert r.status_code == 200, (body, r.text)
        assert r.json()["received"] == received, body


def test_future_timestamps_are_dead_letters(client: TestClient) -> None:
    client.put("/patterns/card_testing", content=CARD_TESTING)
    r = client.post("/events", json=[{"k": 1, "ts": 4_000_000_000_000}])  # 2096
    assert r.json()["reasons"] == {"future_timestamp": 1}


def test_streams_select_patterns(client: TestClient) -> None:
    text = CARD_TESTING.replace("  key card_id", "  from transactions\n  key card_id")
    client.put("/patterns/card_testing", content=text)
    events = [*card_events("c1", T0), {"card_id": "zz", "ts": T0 + 60000}]
    assert client.post("/events?stream=logins", json=events).json()["alerts"] == 0
    events = [*card_events("c2", T0 + 100000), {"card_id": "zz", "ts": T0 + 200000}]
    assert client.post("/events?stream=transactions", json=events).json()["alerts"] == 1


def test_alert_filters_since_and_limit(client: TestClient) -> None:
    client.put("/patterns/card_testing", content=CARD_TESTING)
    events = []
    for i in range(5):
        events += card_events(f"c{i}", T0 + i * 1000_000, prefix=f"i{i}-")
    events.append({"card_id": "zz", "ts": T0 + 10_000_000})
    assert client.post("/events", json=events).json()["alerts"] == 5

    def ids(**params: object) -> list[int]:
        r = client.get("/alerts", params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["alerts"]]

    assert ids() == [1, 2, 3, 4, 5]
    assert ids(limit=2) == [4, 5]  # the newest
    assert ids(since=1, limit=2) == [2, 3]  # paging forward
    assert ids(since=5) == []
    assert ids(key="c3") == [4]
    assert ids(pattern="card_testing", severity="high") == [1, 2, 3, 4, 5]
    assert ids(severity="low") == []
    assert ids(pattern="nope") == []
    assert ids(since="2000-01-01T00:00:00Z") == [1, 2, 3, 4, 5]
    assert ids(since="2999-01-01T00:00:00") == []
    assert client.get("/alerts", params={"since": "soon"}).status_code == 422
    assert client.get("/alerts", params={"limit": 0}).status_code == 422


def test_recent_buffer_is_bounded(make_client: Callable[..., TestClient]) -> None:
    from service.config import ApiConfig

    client = make_client(api=ApiConfig(recent_alerts=3))
    client.put("/patterns/card_testing", content=CARD_TESTING)
    events = []
    for i in range(5):
        events += card_events(f"c{i}", T0 + i * 1000_000, prefix=f"i{i}-")
    events.append({"card_id": "zz", "ts": T0 + 10_000_000})
    client.post("/events", json=events)
    body = client.get("/alerts").json()
    assert [a["id"] for a in body["alerts"]] == [3, 4, 5]
    assert (body["last_id"], body["oldest_id"]) == (5, 3)


def test_oversize_body_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=1000)
    big = b"x" * 1001
    for method, url in [("POST", "/events"), ("PUT", "/patterns/p"),
                        ("POST", "/patterns/validate"), ("POST", "/patterns/test"),
                        ("PUT", "/models/m")]:
        r = client.request(method, url, content=big)
        assert r.status_code == 413, (method, url)
        assert "1000 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no content-length: chunked
        for _ in range(20):
            yield b"y" * 100

    r = client.post("/events", content=chunks())
    assert r.status_code == 413
    r = client.post("/events", content=b'{"ts": 1}' + b" " * 900)
    assert r.status_code == 200


def test_health_ready_metrics_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"ready": True, "mode": "embedded", "detail": None}
    client.put("/patterns/card_testing", content=CARD_TESTING)
    client.post("/events", json=[*card_events("c1", T0), {"card_id": "zz", "ts": T0 + 60_000},
                                 {"ts": "bad"}])
    text = client.get("/metrics").text
    for line in [
        'cep_events_in_total{source="default"} 6.0',
        'cep_alerts_total{pattern="card_testing",severity="high"} 1.0',
        'cep_dead_letters_total{reason="bad_time"} 1.0',
        'cep_partial_matches{pattern="card_testing",version="1"} 0.0',
        'cep_pending_timers{pattern="card_testing",version="1"} 0.0',
        'cep_swaps_total{kind="pattern_put"} 1.0',
        "cep_ready 1.0",
        "cep_batch_seconds_count 1.0",
    ]:
        assert line in text, line
    assert 'cep_watermark_lag_seconds{clock="default",partition="default:http"}' in text
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ["/patterns", "/patterns/{name}", "/patterns/validate", "/patterns/test",
                 "/models", "/models/{name}", "/events", "/alerts", "/alerts/stream",
                 "/metrics", "/health", "/ready"]:
        assert path in paths, path
    assert "text/plain" in paths["/patterns/{name}"]["put"]["requestBody"]["content"]
    assert "422" in paths["/patterns/{name}"]["put"]["responses"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
