"""JSON Schemas shipped with the package (the alert record: docs/alerts.md)."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def alert_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of one alert record."""
    text = files("cep.schemas").joinpath("alert.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
