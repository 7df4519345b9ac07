"""The OpenAPI spec types the alert (the JSON Schema of docs/alerts.md), the dead
letter and the SSE stream, and every error is RFC 9457 problem details."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from fastapi.testclient import TestClient
from service_helpers import T0, card_events, ndjson

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_file
from cep.runtime.engine import Engine
from cep.schemas import alert_schema

ROOT = Path(__file__).resolve().parents[2]
PROBLEM_KEYS = {"type", "title", "status", "detail"}


def test_docs_alerts_md_holds_the_shipped_schema() -> None:
    text = (ROOT / "docs" / "alerts.md").read_text("utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert json.loads(blocks[-1]) == alert_schema()
    jsonschema.Draft202012Validator.check_schema(alert_schema())


def test_golden_alerts_validate_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(alert_schema())
    dirs = sorted(d for d in (ROOT / "tests" / "golden").iterdir() if d.is_dir())
    assert len(dirs) >= 6
    n = 0
    for d in dirs:
        (pattern,) = load_file(ROOT / "patterns" / f"{d.name}.cep")
        engine = Engine([compile_pattern(pattern)], now_ms=lambda: 1_800_000_000_000)
        events = [json.loads(x) for x in (d / "events.jsonl").read_text().splitlines()]
        res = engine.process(events)
        res.extend(engine.finish())
        for alert in res.alerts:
            validator.validate(alert.record)
            n += 1
    assert n > 10
    bad: dict[str, Any] = {"pattern": "p"}
    assert not validator.is_valid(bad)


def test_openapi_types_alert_dead_letter_sse_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["Alert"]["required"] == alert_schema()["required"]
    envelope = schemas["AlertEnvelope"]["properties"]
    assert envelope["alert"] == {"$ref": "#/components/schemas/Alert"}
    assert "reason" in schemas["DeadLetterModel"]["properties"]
    assert "schema" in schemas["DeadLetterModel"]["properties"]["reason"]["description"]
    stream = spec["paths"]["/alerts/stream"]["get"]["responses"]["200"]["content"]
    events = stream["text/event-stream"]["schema"]["x-sse-events"]
    assert events["alert"] == {"$ref": "#/components/schemas/AlertEnvelope"}
    assert "HTTPValidationError" not in schemas
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for status, resp in op["responses"].items():
                if int(status) >= 400 and (path, status) != ("/ready", "503"):
                    content = resp["content"]
                    assert list(content) == ["application/problem+json"], (path, method)
                    assert content["application/problem+json"]["schema"] == {
                        "$ref": "#/components/schemas/Problem"}
    assert set(schemas["Problem"]["required"]) >= {"title", "status", "detail"}
    ready = spec["paths"]["/ready"]["get"]["responses"]["503"]["content"]
    assert ready == {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}


def _is_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_every_error_is_problem_details(client: TestClient) -> None:
    _is_problem(client.get("/patterns/nope"), 404)
    body = _is_problem(client.get("/alerts", params={"limit": "many"}), 422)
    assert "limit" in body["detail"] and body["errors"]
    body = _is_problem(client.put("/patterns/oops", content=b"pattern oops { match a where }"),
                       422)
    assert body["diagnostics"][0]["line"] == 1
    _is_problem(client.get("/alerts", params={"since": "yesterday-ish"}), 422)
    ok = client.post("/events", content=ndjson(card_events("c1", T0)),
                     headers={"content-type": "application/x-ndjson"})
    assert ok.status_code == 200


def test_docs_page_uses_local_assets(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "cdn" not in html.lower()
    assert "/docs-assets/swagger-ui-bundle.js" in html
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
