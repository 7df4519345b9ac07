"""The same input through every mode without a broker — a backtest over a file,
`POST /events` (embedded service), `POST /patterns/test` (dry run) — gives the same
alerts and the same dead-letter records (tests/integration/test_every_mode_kafka.py
adds the Kafka runner)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from every_mode import LINES, PATTERN, REASONS, backtest, comparable
from fastapi.testclient import TestClient


def test_backtest_embedded_and_dry_run_agree(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    alerts, dead = backtest(tmp_path / "bt")
    assert [r["reason"] for r in dead] == REASONS
    assert [a["measures"] for a in alerts] == [{"attempts": 3, "amount": 500.0}]
    assert dead[0]["raw"] == "{not json" and dead[1]["event"] == [1, 2]

    # the embedded service: POST /events answers with the same records, and writes them
    client = make_client()
    assert client.put("/patterns/card_testing", content=PATTERN).status_code in (200, 201)
    r = client.post("/events", content=b"\n".join(LINES),
                    headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200
    answer = r.json()
    assert [comparable(d) for d in answer["errors"]] == [comparable(d) for d in dead]
    assert [d["position"][2] for d in answer["errors"]] == [2, 3, 4, 5, 6]  # line numbers
    assert answer["reasons"] == {"malformed": 2, "missing_time": 1, "bad_time": 1,
                                 "missing_key": 1}
    written = [orjson.loads(x) for x in
               (tmp_path / "out" / "dead-letters.jsonl").read_bytes().splitlines()]
    assert written == answer["errors"]
    got = client.get("/alerts").json()["alerts"]
    assert [a["alert"]["alert_id"] for a in got] == [a["alert_id"] for a in alerts]

    # the dry run: JSON values only (no invalid JSON text to post)
    values = [orjson.loads(x) for x in LINES if x != b"{not json"]
    r = client.post("/patterns/test", content=orjson.dumps({"source": PATTERN,
                                                             "events": values}))
    assert r.status_code == 200
    dry = r.json()
    assert [a["alert_id"] for a in dry["alerts"]] == [a["alert_id"] for a in alerts]
    assert [comparable(d) for d in dry["dead_letters"]] == [comparable(d) for d in dead[1:]]
    assert [d["position"] for d in dry["dead_letters"]] == [["test", i] for i in (1, 2, 3, 4)]
