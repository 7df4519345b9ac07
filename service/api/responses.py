"""Documented error responses, shared by the routers (OpenAPI `responses=`)."""

from __future__ import annotations

from typing import Any

from service.api.schemas import Problem

Responses = dict[int | str, dict[str, Any]]


def problem(status: int, description: str) -> Responses:
    return {status: {"model": Problem, "description": description}}


E401 = problem(401, "missing or wrong API token")
E413 = problem(413, "request body larger than api.max_body_bytes")
E503 = problem(503, "the engine loop is not running (starting, restoring state, stopping)")
