"""A declared stream (schema + epoch seconds) gives the same dead letters, with the
same details, in a backtest, through POST /events and in the dry run
(tests/integration/test_streams_kafka.py adds the Kafka runner)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from fastapi.testclient import TestClient
from stream_decl import EVENTS, FIELDS, MEASURES, PATTERN, REASONS, backtest

from service.config import StreamConfig


def test_schema_and_time_unit_dead_letters_in_every_mode(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    alerts, dead = backtest(tmp_path / "bt")
    assert [(d["reason"], d["detail"]) for d in dead] == REASONS
    assert [a["measures"] for a in alerts] == MEASURES

    client = make_client(streams={"transactions": StreamConfig(fields=FIELDS, time_unit="s")})
    assert client.put("/patterns/big", content=PATTERN).status_code == 201
    r = client.post("/events", params={"stream": "transactions"}, json=EVENTS).json()
    assert [(d["reason"], d["detail"]) for d in r["errors"]] == REASONS
    assert r["alerts"] == 2
    got = client.get("/alerts").json()["alerts"]
    assert [a["alert"]["alert_id"] for a in got] == [a["alert_id"] for a in alerts]

    dry = client.post("/patterns/test", content=orjson.dumps(
        {"source": PATTERN, "events": EVENTS, "stream": "transactions"})).json()
    assert [(d["reason"], d["detail"]) for d in dry["dead_letters"]] == REASONS
    assert [a["measures"] for a in dry["alerts"]] == MEASURES
