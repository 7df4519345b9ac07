"""The OpenAPI spec, completed where FastAPI cannot infer it: the alert record
(`components.schemas.Alert`, from `cep/schemas/alert.schema.json`), the SSE stream's
events, and one error shape (RFC 9457 problem details) for every error response."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from cep.schemas import alert_schema
from service.api.problems import MEDIA_TYPE
from service.api.schemas import ALERT_MARKER

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

SSE_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": (
        "A text/event-stream. Each alert is one event: `id: <sequence id>`, "
        "`event: alert`, `data: <AlertEnvelope JSON>` (schema in `x-sse-events`). After a "
        "resume that skipped alerts no longer buffered: `event: gap`, `data: "
        "{\"from\": n, \"to\": m}`. Comments (`: keep-alive`) every heartbeat."
    ),
    "x-sse-events": {
        "alert": {"$ref": "#/components/schemas/AlertEnvelope"},
        "gap": {
            "type": "object", "required": ["from", "to"],
            "properties": {"from": {"type": "integer"}, "to": {"type": "integer"}},
        },
    },
}


def _alert_component() -> dict[str, Any]:
    schema = {k: v for k, v in alert_schema().items() if k not in ("$schema", "$id")}
    return schema


def _link_alerts(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get(ALERT_MARKER):
            return {"$ref": "#/components/schemas/Alert"}
        return {k: _link_alerts(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_link_alerts(v) for v in node]
    return node


def _is_error(resp: dict[str, Any]) -> bool:
    """A response documented as an error (Problem, FastAPI's validation error) or
    with no body given."""
    content = resp.get("content")
    if not content:
        return True
    refs = {str(c.get("schema", {}).get("$ref", "")) for c in content.values()}
    return refs <= {PROBLEM_REF["$ref"], "#/components/schemas/HTTPValidationError"}


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    spec = _link_alerts(spec)
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    components["Alert"] = _alert_component()
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, ops in spec.get("paths", {}).items():
        for op in ops.values():
            responses: dict[str, Any] = op.get("responses", {})
            for status, resp in responses.items():
                if not status.isdigit() or int(status) < 400 or not _is_error(resp):
                    continue  # (e.g. /ready's 503 answers with its own body)
                resp["content"] = {MEDIA_TYPE: {"schema": PROBLEM_REF}}
                if status == "422" and resp.get("description") == "Validation Error":
                    resp["description"] = "invalid request (problem details with `errors`)"
            if path == "/alerts/stream":
                ok = responses.get("200", {})
                ok["content"] = {"text/event-stream": {"schema": SSE_SCHEMA}}
    return spec


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)
            app.openapi_schema = complete(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
