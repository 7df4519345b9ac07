"""Backtests for the console: a pattern text over a sample, compared with the
deployed version, scored against labels.

Everything here runs in throwaway engines with the service's time settings and
models (`engine_config`, `snapshot_scorer`): no state of the service is touched. The
sample is bounded (`MAX_EVENTS`) so a dry run cannot hold the worker for long.

Comparing two versions: alert ids hash the version, so the same detection has a
different `alert_id` under another version. Two alerts are *the same detection* when
pattern, kind, key and the start of the match (`window.start`) are equal, which is
what "alerts gained / lost" counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cep.compiler.pipeline import CompiledPattern
from cep.dsl.ast import Pattern
from cep.runtime.driver import Driver, ListSink
from cep.runtime.engine import Engine
from cep.runtime.records import Batch
from cep.scoring.registry import ModelRegistry
from cep.synth.labels import score_alerts
from cep.values import to_ms
from service.build import compile_all, engine_config
from service.config import Settings
from service.scoring import snapshot_scorer

MAX_EVENTS = 50_000
MAX_ALERTS_SHOWN = 500
MAX_KEYS_SHOWN = 50

Record = dict[str, Any]


@dataclass
class RunResult:
    alerts: list[Record]
    dead_letters: list[Record]


def run(plans: Sequence[CompiledPattern], events: Sequence[Any], settings: Settings,
        registry: ModelRegistry, stream: str | None = None) -> RunResult:
    """The plans over the events in a fresh engine; the input ends after them."""
    engine = Engine(list(plans), engine_config(settings), scorer=snapshot_scorer(registry),
                    track_changes=False)
    out = ListSink()
    driver = Driver(engine, [out])
    n = len(events)
    driver.step(Batch(list(events), [("dry-run", i) for i in range(n)], stream=stream,
                      partition="dry-run", received=n))
    driver.finish()
    return RunResult(
        [a.record for a in out.alerts],
        [{"reason": d.reason, "detail": d.detail, "position": d.position}
         for d in out.dead_letters],
    )


def run_patterns(patterns: Sequence[Pattern], events: Sequence[Any], settings: Settings,
                 registry: ModelRegistry, stream: str | None = None) -> RunResult:
    return run(compile_all(list(patterns)), events, settings, registry, stream)


def signature(alert: Mapping[str, Any]) -> bytes:
    """What makes two alerts the same detection across versions: pattern, kind, key
    and when the match started (`window.start`, the time of its first event). A
    version that needs fewer or more events to fire still finds the same detection
    when it starts at the same event."""
    window = alert.get("window") or {}
    start = window.get("start") if isinstance(window, dict) else None
    return orjson.dumps([alert.get("pattern"), alert.get("kind"), alert.get("key"), start])


def diff(new: Sequence[Record], old: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """(gained, lost): detections only the new run has, and only the old run has."""
    new_sigs = {signature(a) for a in new}
    old_sigs = {signature(a) for a in old}
    return ([a for a in new if signature(a) not in old_sigs],
            [a for a in old if signature(a) not in new_sigs])


def per_key(alerts: Sequence[Record]) -> list[Record]:
    """Alerts per (pattern, key), most first."""
    counts = Counter((str(a.get("pattern")), _key_text(a.get("key"))) for a in alerts)
    return [{"pattern": p, "key": k, "alerts": n}
            for (p, k), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _key_text(key: Any) -> str:
    if isinstance(key, list | tuple):
        return ",".join(str(k) for k in key)
    return "" if key is None else str(key)


def incidents(events: Sequence[Any], label_field: str, time_field: str,
              alerts: Sequence[Record], patterns: Sequence[str]) -> list[Record]:
    """Labelled incidents ("<pattern>:<n>") of the given patterns: first and last time,
    and whether an alert of that pattern contains one of their events."""
    spans: dict[str, list[int]] = {}
    label_of: dict[Any, str] = {}
    for e in events:
        if not isinstance(e, dict):
            continue
        label = e.get(label_field)
        if not isinstance(label, str) or label.partition(":")[0] not in patterns:
            continue
        t = to_ms(e.get(time_field))
        if t is None:
            continue
        span = spans.setdefault(label, [t, t])
        span[0], span[1] = min(span[0], t), max(span[1], t)
        if "id" in e:
            label_of[e["id"]] = label
    found: set[str] = set()
    for a in alerts:
        for evs in (a.get("events") or {}).values():
            for e in evs:
                if not isinstance(e, dict):
                    continue
                label = e.get(label_field, label_of.get(e.get("id")))
                if isinstance(label, str) and label.partition(":")[0] == a.get("pattern"):
                    found.add(label)
    return [{"label": k, "pattern": k.partition(":")[0], "start": s, "end": t,
             "detected": k in found} for k, (s, t) in sorted(spans.items())]


def scores(events: Sequence[Any], alerts: Sequence[Record], label_field: str,
           patterns: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision and recall of the given patterns (`cep.synth.labels.score_alerts`)."""
    dicts = [e for e in events if isinstance(e, dict)]
    all_scores = score_alerts(dicts, alerts, label_field)
    return {p: s for p, s in all_scores.items() if p in patterns}
