"""Declared stream schemas in the service: PUT /patterns and /patterns/validate report
unknown fields and type mismatches with line and column; events that violate the
schema are dead letters `schema`; type mismatches per pattern are in /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi.testclient import TestClient
from service_helpers import T0

from service.config import StreamConfig

FIELDS = {"card_id": "string", "type": "string", "amount": "number", "ts": "integer"}

TYPO = b"""pattern big_spend {
  from transactions
  key card_id
  match
    a where ammount > 500
}
"""
MISMATCH = b"""pattern big_spend {
  from transactions
  key card_id
  match
    a where amount > "500"
}
"""
GOOD = TYPO.replace(b"ammount", b"amount")


def test_schema_checks_patterns_and_events(make_client: Callable[..., TestClient]) -> None:
    client = make_client(streams={
        "transactions": StreamConfig(fields=FIELDS, time_unit="s"),
        "logins": StreamConfig(),
    })
    r = client.put("/patterns/big_spend", content=TYPO)
    assert r.status_code == 422
    (d,) = r.json()["diagnostics"]
    assert (d["code"], d["line"], d["column"]) == ("E300", 5, 13)
    assert d["hint"] == "did you mean `amount`?"
    v = client.post("/patterns/validate", content=MISMATCH).json()
    assert [(x["code"], x["line"]) for x in v["diagnostics"]] == [("E310", 5)]
    assert client.put("/patterns/big_spend", content=GOOD).status_code == 201

    t = T0 // 1000  # the stream is declared in epoch seconds
    events = [
        {"card_id": "c1", "type": "purchase", "amount": 900, "ts": t},
        {"card_id": "c1", "type": "purchase", "amount": "900", "ts": t + 1},
        {"card_id": "c1", "type": "purchase", "amount": 900, "ts": T0},  # ms, not s
        {"card_id": "c2", "type": "purchase", "amount": 901, "ts": t + 60},
    ]
    r = client.post("/events", params={"stream": "transactions"}, json=events).json()
    assert r["reasons"] == {"schema": 1, "bad_time": 1}
    details = {e["reason"]: e["detail"] for e in r["errors"]}
    assert "field 'amount' is string, the schema says number" in details["schema"]
    assert "it looks like epoch milliseconds" in details["bad_time"]
    assert r["alerts"] >= 1


def test_type_mismatches_are_in_metrics(client: TestClient) -> None:
    assert client.put("/patterns/big_spend", content=MISMATCH).status_code == 201
    events = [{"card_id": f"c{i}", "type": "purchase", "amount": 900, "ts": T0 + i}
              for i in range(5)]
    assert client.post("/events", json=events).json()["accepted"] == 5
    client.post("/events", json=[{"card_id": "z", "amount": 1, "ts": T0 + 60_000}])
    for _ in range(100):
        text = client.get("/metrics").text
        line = next((x for x in text.splitlines() if x.startswith(
            'cep_type_mismatches_total{pattern="big_spend"')), "")
        if line.endswith(" 5.0") or line.endswith(" 6.0"):
            break
        time.sleep(0.05)
    assert line.split()[-1] in ("5.0", "6.0"), line


def test_get_streams_lists_declared_schemas(make_client: Callable[..., TestClient]) -> None:
    client = make_client(streams={
        "transactions": StreamConfig(fields=FIELDS, time_unit="s"),
        "logins": StreamConfig(topic="auth.logins"),
    })
    body = client.get("/streams").json()
    assert body["default_stream"] == "events"
    logins, txn = body["streams"]
    assert (logins["name"], logins["topic"], logins["schema"]) == ("logins", "auth.logins", None)
    assert (txn["time_unit"], txn["time_field"]) == ("s", "ts")
    assert txn["schema"]["properties"]["amount"] == {"type": "number"}
    assert set(txn["schema"]["required"]) == set(FIELDS)
