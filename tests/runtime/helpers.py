"""Run pattern text over tiny event lists and return matches as readable strings."""

from __future__ import annotations

from typing import Any

from cep.compiler.plan import compile_pattern
from cep.dsl.parser import parse
from cep.runtime.engine import Engine, EngineConfig


def events_from(spec: str, *, start: int = 1000, step: int = 1) -> list[dict[str, Any]]:
    """'a1 c b1 b2' -> events with id=a1, name=a (letters before the digits), ts increasing.
    A token may carry fields: 'a1:price=7' ; and an explicit time: 'a1@50'."""
    out = []
    ts = start
    for tok in spec.split():
        fields: dict[str, Any] = {}
        if ":" in tok:
            tok, rest = tok.split(":", 1)
            for kv in rest.split(","):
                k, v = kv.split("=")
                try:
                    fields[k] = int(v)
                except ValueError:
                    try:
                        fields[k] = float(v)
                    except ValueError:
                        fields[k] = v
        if "@" in tok:
            tok, t = tok.split("@")
            ts = int(t)
        name = tok.rstrip("0123456789")
        out.append({"id": tok, "name": name, "ts": ts, **fields})
        ts += step
    return out


def run_pattern(text: str, events: list[dict[str, Any]], *, finish: bool = True,
                batch: int = 1, ooo: int = 0) -> list[Any]:
    pf = parse(text)
    plan = compile_pattern(pf.patterns[0])
    eng = Engine([plan], EngineConfig(max_out_of_orderness_ms=ooo), now_ms=lambda: 0)
    alerts = []
    for i in range(0, len(events), batch):
        alerts.extend(eng.process(events[i:i + batch]).alerts)
    if finish:
        alerts.extend(eng.finish().alerts)
    return alerts


def matches(text: str, spec: str, **kw: Any) -> list[str]:
    """Matches as 'a1 b2' strings (events in stage order), in emission order;
    timeouts are prefixed with 'timeout:'."""
    out = []
    for a in run_pattern(text, events_from(spec), **kw):
        ids = [e["id"] for evs in a.record["events"].values() for e in evs]
        pre = "timeout:" if a.record["kind"] == "timeout" else ""
        out.append(pre + " ".join(ids))
    return out
