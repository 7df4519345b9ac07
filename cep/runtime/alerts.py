"""Alert records: identity, JSON-safe values, and the record of docs/alerts.md."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from cep.program import CompiledPattern, EmitPlan
from cep.runtime.matcher import Run, match_events
from cep.runtime.records import Alert


def event_identity(data: Any) -> str:
    """A stable identity for an event: its `id` field, else a hash of its content."""
    if isinstance(data, dict):
        i = data.get("id")
        if isinstance(i, (str, int)) and not isinstance(i, bool):
            return f"id:{i}"
    blob = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return "h:" + hashlib.blake2b(blob, digest_size=12).hexdigest()


_I64 = 2**63


def json_safe(v: Any) -> Any:
    """Integers beyond 64 bits (JSON consumers and orjson cannot hold them) as floats."""
    if v.__class__ is int:
        return float(v) if not -_I64 <= v < _I64 else v
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v



def key_json(key: Any) -> Any:
    if key == ():
        return None
    if isinstance(key, tuple):
        return list(key)
    return key



def make_alert(
    plan: CompiledPattern, key: Any, kind: str, run: Run, t: int,
    measures: dict[str, Any], emit: EmitPlan, detected: str,
) -> Alert:
    """The alert record of a completed (or timed-out) run, with its deterministic id:
    a hash of (pattern, version, key, kind, the identities of its events)."""
    per_stage = match_events(plan, run)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{plan.name}\x1f{plan.version}\x1f{key!r}\x1f{kind}".encode())
    events: dict[str, list[Any]] = {}
    for stage, evs in per_stage.items():
        events[stage] = [e.data for e in evs]
        for e in evs:
            h.update(f"\x1e{stage}:{event_identity(e.data)}".encode())
    record = {
        "alert_id": h.hexdigest(),
        "pattern": plan.name,
        "pattern_version": plan.version,
        "kind": kind,
        "key": key_json(key),
        "severity": emit.severity,
        "time": t,
        "window": {"start": run.start_ts, "end": t},
        "events": events,
        "measures": json_safe(measures),
        "detected_at": detected,
    }
    return Alert(emit.topic, key_json(key), record)
