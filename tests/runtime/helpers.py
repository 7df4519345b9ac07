"""Run pattern text over tiny event lists and return matches as readable strings."""

from __future__ import annotations

import re
from typing import Any

from cep.compiler.pipeline import compile_pattern
from cep.dsl.parser import parse
from cep.runtime.engine import Alert, Engine, EngineConfig, Result

# a tail that reports completed matches and timed-out partial matches (a pattern with
# only `on timeout emit` reports timeouts only)
WITH_TIMEOUTS = "emit {} on timeout emit {}"


def pattern(match: str, header: str = "", tail: str = "") -> str:
    """A one-pattern source: `pattern p { <header> match <match> <tail> }`."""
    return f"pattern p {{\n  {header}\n  match {match}\n  {tail}\n}}"


_TOKEN = re.compile(r"(?P<id>[^:@]+)(?:@(?P<t1>-?\d+))?(?::(?P<f>[^@]*))?(?:@(?P<t2>-?\d+))?")


def _value(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def events_from(spec: str, *, start: int = 1000, step: int = 1) -> list[dict[str, Any]]:
    """'a1 c b1 b2' -> events with id=a1, name=a (letters before the digits), ts increasing.
    A token may carry fields, 'a1:price=7,m=x', and an explicit time, 'a1@50' or
    'a1:price=7@50' (later tokens continue from it)."""
    out = []
    ts = start
    for tok in spec.split():
        m = _TOKEN.fullmatch(tok)
        if m is None:
            raise ValueError(f"bad event token {tok!r}")
        fields = {}
        if m["f"]:
            for kv in m["f"].split(","):
                k, v = kv.split("=")
                fields[k] = _value(v)
        t = m["t1"] or m["t2"]
        if t is not None:
            ts = int(t)
        ident = m["id"]
        out.append({"id": ident, "name": ident.rstrip("0123456789"), "ts": ts, **fields})
        ts += step
    return out


def feed(text: str, events: list[dict[str, Any]], *, finish: bool = True,
         batch: int = 1, ooo: int = 0) -> tuple[Engine, Result]:
    """Run the first pattern of `text` over `events` in batches of `batch`; the engine
    (for state inspection) and everything it produced."""
    pf = parse(text)
    plan = compile_pattern(pf.patterns[0])
    eng = Engine([plan], EngineConfig(max_out_of_orderness_ms=ooo), now_ms=lambda: 0)
    result = Result()
    for i in range(0, len(events), batch):
        result.extend(eng.process(events[i:i + batch]))
    if finish:
        result.extend(eng.finish())
    return eng, result


def run_pattern(text: str, events: list[dict[str, Any]], *, finish: bool = True,
                batch: int = 1, ooo: int = 0) -> list[Alert]:
    return feed(text, events, finish=finish, batch=batch, ooo=ooo)[1].alerts


def show(alert: Alert, *, by_time: bool = False) -> str:
    """'a1 b2' (events in stage order, or in time order); timeouts as 'timeout:a1'."""
    evs = [e for stage in alert.record["events"].values() for e in stage]
    if by_time:
        evs.sort(key=lambda e: e["ts"])
    pre = "timeout:" if alert.record["kind"] == "timeout" else ""
    return pre + " ".join(e["id"] for e in evs)


def matches(text: str, spec: str, *, by_time: bool = False, **kw: Any) -> list[str]:
    """Matches as 'a1 b2' strings (events in stage order), in emission order;
    timeouts are prefixed with 'timeout:'."""
    return [show(a, by_time=by_time) for a in run_pattern(text, events_from(spec), **kw)]


def matches_at(text: str, spec: str, **kw: Any) -> list[tuple[str, int]]:
    """Like `matches`, with each alert's time: the completing event's time for a
    match, start + window (or previous + stage window) for a timeout."""
    return [(show(a), a.record["time"]) for a in run_pattern(text, events_from(spec), **kw)]


def named(stage: str, quant: str = "", *, cond: str = "", after: str = "") -> str:
    """A stage that takes the events called like it: `named("a", "+ consecutive")` is
    `a+ consecutive where name == "a"`; `cond` is ANDed, `after` follows the where
    (`until …`, `within …`)."""
    where = f'name == "{stage}"' + (f" and ({cond})" if cond else "")
    return f"{stage}{quant} where {where}" + (f" {after}" if after else "")
