"""`/patterns`: list, get, put (versions), delete, validate, test; their errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from service_helpers import AUTH, BROKEN, CARD_TESTING, PAIR, SCORED, T0, card_events


def put(client: TestClient, name: str, text: str, **kw: object) -> object:
    return client.put(f"/patterns/{name}", content=text.encode(),
                      headers={"content-type": "text/plain"}, **kw)  # type: ignore[arg-type]


def change(r: object) -> dict[str, object]:
    """A change's answer without `applied_at` (checked set) and `control_offset`
    (embedded mode: none)."""
    body: dict[str, object] = r.json()  # type: ignore[attr-defined]
    assert isinstance(body.pop("applied_at"), str) and body.pop("control_offset") is None
    return body


def test_embedded_mode_has_no_control_topic(client: TestClient) -> None:
    assert client.get("/control").json() == {
        "shared": False, "topic": None, "instance": None, "position": None, "applied": 0,
        "refused": 0, "failed": {}}


def test_put_new_pattern_then_list_and_get(client: TestClient) -> None:
    r = client.put("/patterns/card_testing", content=CARD_TESTING)
    assert r.status_code == 201, r.text
    body = r.json()
    applied_at = body.pop("applied_at")
    assert body == {"name": "card_testing", "version": 1, "previous_version": None,
                    "draining": [], "control_offset": None}  # embedded: no control topic
    assert applied_at.endswith("Z") and applied_at[:4].isdigit()  # applied when answered
    listed = client.get("/patterns").json()["patterns"]
    assert [p["name"] for p in listed] == ["card_testing"]
    assert listed[0]["origin"] == "api"
    assert listed[0]["versions"][0]["version"] == 1
    got = client.get("/patterns/card_testing").json()
    assert got["source"] == CARD_TESTING
    assert got["key"] == ["card_id"]
    assert got["description"] == "tiny purchases, then a big one"
    assert got["versions"] == [{"version": 1, "draining": False, "keys": 0,
                                "partial_matches": 0, "pending_timers": 0,
                                "buffered_events": 0}]


def test_replace_increments_version_and_shows_the_draining_one(client: TestClient) -> None:
    assert client.put("/patterns/pair", content=PAIR % "low").status_code == 201
    # a partial match under version 1 (the second event moves the watermark past the first)
    r = client.post("/events", json=[{"k": "x", "type": "a", "ts": T0},
                                     {"k": "y", "type": "z", "ts": T0 + 1}])
    assert r.status_code == 200, r.text
    r = client.put("/patterns/pair", content=PAIR % "high")
    assert r.status_code == 200
    assert change(r) == {"name": "pair", "version": 2, "previous_version": 1, "draining": [1]}
    versions = client.get("/patterns/pair").json()["versions"]
    assert [(v["version"], v["draining"], v["partial_matches"]) for v in versions] == [
        (1, True, 1), (2, False, 0)]
    # the old match completes under version 1; then version 1 is retired
    r = client.post("/events", json=[{"k": "x", "type": "b", "ts": T0 + 2},
                                     {"k": "y", "type": "z", "ts": T0 + 3}])
    assert r.json()["alerts"] == 1
    alert = client.get("/alerts").json()["alerts"][0]["alert"]
    assert (alert["pattern_version"], alert["severity"]) == (1, "low")
    versions = client.get("/patterns/pair").json()["versions"]
    assert [v["version"] for v in versions] == [2]


def test_bad_pattern_is_422_with_every_diagnostic(client: TestClient) -> None:
    r = client.put("/patterns/broken", content=BROKEN)
    assert r.status_code == 422
    body = r.json()
    assert "does not compile" in body["detail"]
    d = body["diagnostics"][0]
    assert d["line"] == 4 and d["column"] >= 5
    assert d["message"] and "^" in d["snippet"] and d["code"].startswith("E")
    assert client.get("/patterns/broken").status_code == 404


def test_several_errors_are_all_reported(client: TestClient) -> None:
    text = """pattern many {
  key card
  match
    a where bogus(amount) > 1
    then b where unknownfn(3)
  emit { x = count(q) }
}
"""
    r = client.put("/patterns/many", content=text)
    assert r.status_code == 422
    diags = r.json()["diagnostics"]
    assert [(d["line"], d["column"]) for d in diags][:2] == [(4, 13), (5, 18)]
    assert len(diags) >= 3
    assert all(d["snippet"] and d["message"] for d in diags)


def test_name_mismatch_and_pattern_count(client: TestClient) -> None:
    r = client.put("/patterns/other", content=CARD_TESTING)
    assert r.status_code == 422
    d = r.json()["diagnostics"][0]
    assert "uploaded as `other`" in d["message"] and (d["line"], d["column"]) == (1, 9)
    r = client.put("/patterns/card_testing", content=CARD_TESTING + PAIR % "low")
    assert r.status_code == 422
    assert "exactly one pattern" in r.json()["diagnostics"][0]["message"]


def test_bad_names_and_non_utf8(client: TestClient) -> None:
    assert client.put("/patterns/..%2Fetc", content=CARD_TESTING).status_code in (404, 422)
    assert client.put("/patterns/9lives", content=CARD_TESTING).status_code == 422
    r = client.put("/patterns/card_testing", content=b"pattern \xff")
    assert r.status_code == 422
    assert "UTF-8" in r.json()["diagnostics"][0]["message"]


def test_unknown_model_in_a_pattern_is_422(client: TestClient) -> None:
    r = client.put("/patterns/scored", content=SCORED)
    assert r.status_code == 422
    d = r.json()["diagnostics"][0]
    assert "unknown model `txn_risk`" in d["message"]
    assert (d["line"], d["column"]) == (3, 20)


def test_delete(client: TestClient) -> None:
    client.put("/patterns/card_testing", content=CARD_TESTING)
    client.post("/events", json=card_events("c1", T0)[:2])
    r = client.delete("/patterns/card_testing")
    assert r.status_code == 200
    assert change(r) == {"name": "card_testing", "version": 1, "dropped_partial_matches": 1}
    assert client.get("/patterns").json() == {"patterns": []}
    assert client.delete("/patterns/card_testing").status_code == 404
    # a new upload continues the version count
    assert client.put("/patterns/card_testing", content=CARD_TESTING).json()["version"] == 2


def test_validate(client: TestClient) -> None:
    r = client.post("/patterns/validate", content=CARD_TESTING + PAIR % "low")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "patterns": ["card_testing", "pair"], "diagnostics": []}
    r = client.post("/patterns/validate", content=BROKEN)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is False and body["diagnostics"][0]["line"] == 4
    r = client.post("/patterns/validate", content=SCORED)
    assert r.json()["ok"] is False
    assert client.get("/patterns").json() == {"patterns": []}  # nothing loaded


def test_dry_run_returns_alerts_and_touches_nothing(client: TestClient) -> None:
    events = [*card_events("c9", T0), {"card_id": "c9"}, "not an object"]
    r = client.post("/patterns/test", json={"source": CARD_TESTING, "events": events})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patterns"] == ["card_testing"]
    assert [a["measures"] for a in body["alerts"]] == [{"attempts": 3, "amount": 900.0}]
    assert sorted(d["reason"] for d in body["dead_letters"]) == ["malformed", "missing_time"]
    assert client.get("/alerts").json()["alerts"] == []
    assert client.get("/patterns").json() == {"patterns": []}


def test_dry_run_errors(client: TestClient) -> None:
    r = client.post("/patterns/test", json={"source": BROKEN, "events": []})
    assert r.status_code == 422 and r.json()["diagnostics"][0]["line"] == 4
    r = client.post("/patterns/test", content=b"{not json")
    assert r.status_code == 422
    r = client.post("/patterns/test", json={"events": []})
    assert r.status_code == 422


def test_dry_run_with_timeouts_fires_at_the_end(client: TestClient) -> None:
    text = """pattern unpaid {
  key order
  match
    created where type == "created"
    then not paid where type == "paid" within 15m
  emit severity low { order = key }
}
"""
    events = [{"order": "o1", "type": "created", "ts": T0}]
    r = client.post("/patterns/test", json={"source": text, "events": events})
    assert [a["key"] for a in r.json()["alerts"]] == ["o1"]
    r = client.post("/patterns/test", json={"source": text, "events": events,
                                            "finish": False})
    assert r.json()["alerts"] == []


def test_token_required_for_every_mutating_endpoint(authed: TestClient) -> None:
    calls = [
        ("PUT", "/patterns/card_testing", {"content": CARD_TESTING}),
        ("DELETE", "/patterns/card_testing", {}),
        ("PUT", "/models/txn_risk", {"files": {"model": ("m", b"x"), "manifest": ("j", b"{}")}}),
        ("DELETE", "/models/txn_risk", {}),
        ("POST", "/events", {"content": b"{}"}),
    ]
    for method, url, kw in calls:
        r = authed.request(method, url, **kw)  # type: ignore[arg-type]
        assert r.status_code == 401, (method, url, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        r = authed.request(method, url, headers={"Authorization": "Bearer wrong"},
                           **kw)  # type: ignore[arg-type]
        assert r.status_code == 401, (method, url)
        r = authed.request(method, url, headers={"Authorization": "Basic czNjcmV0"},
                           **kw)  # type: ignore[arg-type]
        assert r.status_code == 401, (method, url)
    # with the token they get through
    assert authed.put("/patterns/card_testing", content=CARD_TESTING,
                      headers=AUTH).status_code == 201
    assert authed.delete("/patterns/card_testing", headers=AUTH).status_code == 200
    # reads and dry runs need no token
    assert authed.get("/patterns").status_code == 200
    assert authed.post("/patterns/validate", content=CARD_TESTING).status_code == 200


def test_file_patterns_are_loaded_at_start(make_client: Callable[..., TestClient],
                                           tmp_path: Path) -> None:
    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "ct.cep").write_text(CARD_TESTING)
    client = make_client()
    (p,) = client.get("/patterns").json()["patterns"]
    assert (p["name"], p["version"], p["origin"]) == ("card_testing", 1, "file")
