"""The endpoints the analyst console adds: /ui, /console/*, recent events and dead
letters, /stats, backtests with comparison, history and roll back."""

from __future__ import annotations

from fastapi.testclient import TestClient
from service_helpers import AUTH, BROKEN, CARD_TESTING, PAIR, T0, card_events


def test_ui_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    r = client.get("/ui", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    r = client.get("/ui/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script src="console.js"' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    js = client.get("/ui/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 10_000
    # nothing outside the bundle directory, no dot-files, no unknown types
    for bad in ("..%2Fapp.py", ".hidden.js", "missing.js", "console.ts"):
        assert client.get(f"/ui/{bad}").status_code == 404, bad


def test_console_info_says_whether_changes_need_a_token(
    client: TestClient, authed: TestClient
) -> None:
    assert client.get("/console/info").json()["auth_required"] is False
    info = authed.get("/console/info").json()
    assert info["auth_required"] is True and info["mode"] == "embedded"


def test_language_lists_keywords_functions_and_fields_of_recent_events(
    client: TestClient,
) -> None:
    lang = client.get("/console/language").json()
    assert {"pattern", "match", "within", "emit", "where", "then"} <= set(lang["keywords"])
    assert {"name": "avg", "kind": "aggregate"} in lang["functions"]
    assert {"name": "distance_km", "kind": "scalar"} in lang["functions"]
    assert lang["fields"] == {}
    r = client.post("/events?stream=cards", json=[
        {"card_id": "c1", "ts": T0, "amount": 3, "geo": {"lat": 1.0}}])
    assert r.status_code == 200, r.text
    fields = client.get("/console/language").json()["fields"]
    assert fields == {"cards": ["amount", "card_id", "geo", "geo.lat", "ts"]}


def test_recent_events_and_dead_letters_are_kept_and_filtered(client: TestClient) -> None:
    client.post("/events?stream=a", json=[{"x": 1, "ts": T0}, {"x": 2, "ts": T0 + 1}])
    r = client.post("/events?stream=b", content=b'{"x": 3, "ts": %d}\nnot json\n{"x": 4, '
                    b'"ts": %d}\n' % (T0, T0 + 1))
    assert r.json()["reasons"] == {"malformed": 1}, r.text
    r = client.get("/events/recent").json()
    assert [e["x"] for e in r["events"]] == [1, 2, 3, 4]
    assert r["sources"] == {"a": 2, "b": 2}
    assert [e["x"] for e in client.get("/events/recent?stream=b&limit=1").json()["events"]] \
        == [4]
    dead = client.get("/dead-letters/recent").json()
    assert [(d["source"], d["reason"], d["event"]) for d in dead["dead_letters"]] == [
        ("b", "malformed", "not json")]
    assert dead["reasons"] == {"malformed": 1}
    assert client.get("/dead-letters/recent?reason=late").json()["dead_letters"] == []


def test_synthetic_sample_is_labelled_and_bounded(client: TestClient) -> None:
    r = client.get("/events/synthetic?n=500&seed=3&incident_rate=0.05").json()
    assert len(r["events"]) == 500
    assert r["labelled"] == sum(1 for e in r["events"] if "label" in e) > 0
    assert client.get("/events/synthetic?n=50001").status_code == 422


def test_stats_sums_the_services_own_figures(client: TestClient) -> None:
    client.put("/patterns/pair", content=PAIR % "low")
    client.post("/events", json=[{"k": "x", "type": "a", "ts": T0},
                                 {"k": "y", "type": "a", "ts": T0 + 1},
                                 {"k": "x", "type": "b", "ts": T0 + 2},
                                 {"k": "z", "type": "b", "ts": T0 + 3},
                                 {"no_time": 1}])
    s = client.get("/stats").json()
    assert s["events_in"] == 5
    assert s["alerts"] == 1 and s["alerts_by_pattern"] == {"pair": 1}
    assert s["partial_matches"] == 1  # key y waits for its b
    assert s["dead_letters"] == {"missing_time": 1}
    assert set(s["watermark_lag_s"]) == {"default"}
    assert s["taken_ms"] > 0


def test_backtest_scores_labels_and_compares_with_the_deployed_version(
    client: TestClient,
) -> None:
    assert client.put("/patterns/pair", content=PAIR % "low").status_code == 201
    events = [
        {"id": "1", "k": "x", "type": "a", "ts": T0, "label": "pair:1"},
        {"id": "2", "k": "x", "type": "b", "ts": T0 + 10, "label": "pair:1"},
        {"id": "3", "k": "y", "type": "a", "ts": T0 + 20},
        {"id": "4", "k": "y", "type": "c", "ts": T0 + 30},
        {"id": "5", "k": "z", "type": "a", "ts": T0 + 40, "label": "pair:2"},
        {"id": "6", "k": "z", "type": "c", "ts": T0 + 50, "label": "pair:2"},
    ]
    # the edited version takes b or c: it finds y (a false positive) and z (incident 2)
    edited = (PAIR % "high").replace('type == "b"', 'type in ["b", "c"]')
    r = client.post("/patterns/backtest", json={"source": edited, "events": events})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["patterns"] == ["pair"] and b["events"] == 6 and b["alert_count"] == 3
    assert [(k["key"], k["alerts"]) for k in b["per_key"]] == [("x", 1), ("y", 1), ("z", 1)]
    assert b["scores"]["pair"]["precision"] == 2 / 3
    assert b["scores"]["pair"]["recall"] == 1.0
    assert [(i["label"], i["start"], i["end"], i["detected"]) for i in b["incidents"]] == [
        ("pair:1", T0, T0 + 10, True), ("pair:2", T0 + 40, T0 + 50, True)]
    (cmp,) = b["comparisons"]
    assert (cmp["deployed_version"], cmp["deployed_alerts"], cmp["edited_alerts"]) == (1, 1, 3)
    assert sorted(a["key"] for a in cmp["gained"]) == ["y", "z"]
    assert cmp["lost"] == [] and cmp["lost_count"] == 0
    assert (b["first_ms"], b["last_ms"]) == (T0, T0 + 50)
    # nothing of the service changed
    assert client.get("/alerts").json()["alerts"] == []
    assert client.get("/patterns/pair").json()["version"] == 1


def test_backtest_on_synthetic_and_recent_samples(client: TestClient) -> None:
    r = client.post("/patterns/backtest", json={
        "source": CARD_TESTING, "sample": "synthetic", "n": 3000, "incident_rate": 0.01})
    b = r.json()
    assert r.status_code == 200, r.text
    assert b["events"] == 3000 and b["alert_count"] >= 1
    assert b["scores"]["card_testing"]["recall"] > 0
    assert any(i["pattern"] == "card_testing" for i in b["incidents"])
    client.post("/events", json=card_events("c9", T0))
    r = client.post("/patterns/backtest", json={"source": CARD_TESTING, "sample": "recent"})
    assert r.json()["events"] == len(card_events("c9", T0))
    assert r.json()["alert_count"] == 1


def test_backtest_errors(client: TestClient) -> None:
    r = client.post("/patterns/backtest", json={"source": BROKEN, "events": []})
    assert r.status_code == 422 and r.json()["diagnostics"][0]["line"] == 4
    r = client.post("/patterns/backtest", json={"source": CARD_TESTING})
    assert r.status_code == 422 and "sample" in r.json()["detail"]
    r = client.post("/patterns/backtest", json={"source": CARD_TESTING,
                                                "events": [{}] * 50_001})
    assert r.status_code == 422 and "at most 50000" in r.json()["detail"]


def test_history_and_rollback(authed: TestClient) -> None:
    for sev in ("low", "high", "critical"):
        assert authed.put("/patterns/pair", content=PAIR % sev, headers=AUTH).status_code < 300
    h = authed.get("/patterns/pair/history").json()
    assert h["current_version"] == 3
    assert [(v["version"], v["current"]) for v in h["versions"]] == [
        (3, True), (2, False), (1, False)]
    assert "severity low" in h["versions"][2]["source"]
    # roll back needs the token
    assert authed.post("/patterns/pair/rollback", json={"version": 1}).status_code == 401
    r = authed.post("/patterns/pair/rollback", json={"version": 1}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 4 and r.json()["previous_version"] == 3
    assert "severity low" in authed.get("/patterns/pair").json()["source"]
    r = authed.post("/patterns/pair/rollback", json={"version": 9}, headers=AUTH)
    assert r.status_code == 404
    # a deleted pattern keeps its history and comes back with a roll back
    assert authed.delete("/patterns/pair", headers=AUTH).status_code == 200
    assert authed.get("/patterns/pair/history").json()["current_version"] is None
    r = authed.post("/patterns/pair/rollback", json={"version": 2}, headers=AUTH)
    assert r.status_code == 201 and r.json()["version"] == 5
    assert authed.get("/patterns/nope/history").status_code == 404
