"""The console in Kafka mode: `/ui` is served, the console endpoints answer, the
events the runner consumed are the console's recent events (backtests, completion),
and its dead letters are listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka_runner_helpers import BASE_TS, produce, settings_of, wait_for, write_config

from service.api.app import create_app

pytestmark = pytest.mark.kafka


def test_console_in_kafka_mode(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=1)
    settings = settings_of(write_config(tmp_path, kafka_bootstrap, topic))
    events = [{"id": f"e{i}", "ts": BASE_TS + i * 1000, "type": "purchase",
               "card_id": "c1", "amount": 10.0 + i} for i in range(5)]
    with TestClient(create_app(settings, tick_s=0.05)) as client:
        wait_for(lambda: client.get("/ready").status_code == 200, 60, what="ready")
        assert client.get("/console/info").json()["mode"] == "kafka"
        r = client.get("/ui/")
        assert r.status_code == 200 and "script-src 'self'" in r.headers[
            "content-security-policy"]
        produce(kafka_bootstrap, topic, [*events, b"{not json"], key_field="card_id")
        got = wait_for(lambda: client.get("/events/recent?stream=transactions").json()
                       ["events"], 30, what="recent events")
        assert [e["id"] for e in got] == [e["id"] for e in events]
        fields = client.get("/console/language").json()["fields"]
        assert fields["transactions"] == ["amount", "card_id", "id", "ts", "type"]
        assert client.get("/stats").json()["events_in"] == len(events) + 1  # + malformed
        dead = wait_for(lambda: client.get("/dead-letters/recent").json()["dead_letters"], 30,
                        what="the dead letter")
        assert [(d["source"], d["reason"], d["event"]) for d in dead] == [
            ("transactions", "malformed", "{not json")]
        r = client.post("/patterns/backtest", json={
            "source": "pattern big { key card_id match x where amount > 12 emit { a = 1 } }",
            "sample": "recent", "stream": "transactions"})
        assert r.status_code == 200, r.text
        assert r.json()["events"] == 5 and r.json()["alert_count"] == 2
