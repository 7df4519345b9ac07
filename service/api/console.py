"""The analyst console: `/ui` (static files) and the read-only endpoints it needs.

`/ui/` serves the bundle built from `service/console/src` (see docs/console.md for
how to rebuild it); the files ship in the package (`service/console/static`), so the
console needs no network beyond the service. Every `/ui` response carries a strict
Content-Security-Policy: scripts and connections only from the service itself, no
inline scripts, no frames, no plugins.

The endpoints (all reads, no token):

- `GET /console/info`: mode, whether changes need a token, limits;
- `GET /console/language`: keywords and functions of the pattern language, loaded
  models with their features, and field names seen in recent events (per stream),
  for the editor's completion;
- `GET /events/recent`: the events the service saw lately (bounded, in memory);
- `GET /events/synthetic`: a generated, labelled sample (`cep.synth`);
- `GET /dead-letters/recent`: recent dead letters, and counts per reason;
- `GET /stats`: the service's own figures as JSON (the same as `/metrics`).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response

from cep.dsl.ast import AGGREGATES, SCALAR_FUNCTIONS
from service.api.console_schemas import (
    ConsoleInfo,
    FunctionInfo,
    LanguageInfo,
    RecentDeadLetter,
    RecentDeadLetters,
    RecentEvents,
    ScoringFigures,
    Stats,
    SyntheticEvents,
)
from service.api.patterns import engine_snapshot, service
from service.dry_run import MAX_EVENTS

router = APIRouter(tags=["console"])

STATIC = Path(__file__).resolve().parents[1] / "console" / "static"
_ASSET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}

CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "style-src 'self' 'unsafe-inline'; font-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
UI_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


@router.get("/ui", include_in_schema=False)
def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/", include_in_schema=False)
def ui_index() -> Response:
    return ui_asset("index.html")


@router.get("/ui/{asset}", include_in_schema=False)
def ui_asset(asset: str) -> Response:
    """A file of the bundle (no sub-directories, no dot-files)."""
    path = STATIC / asset
    if not _ASSET.match(asset) or path.suffix not in _TYPES or not path.is_file():
        raise HTTPException(404, f"no console file {asset!r}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=UI_HEADERS)


@router.get("/console/info", response_model=ConsoleInfo, summary="What the console needs "
            "to know about the service")
def console_info(request: Request) -> ConsoleInfo:
    svc = service(request)
    return ConsoleInfo(
        mode="embedded" if svc.settings.embedded else "kafka",
        version=request.app.version, auth_required=bool(svc.settings.api.token),
        # the largest body a dry run takes (an uploaded events file goes to one)
        max_body_bytes=min(svc.settings.api.max_body_bytes,
                           svc.settings.api.max_test_body_bytes),
        max_dry_run_events=MAX_EVENTS,
    )


@cache
def keywords() -> tuple[str, ...]:
    """The language's keywords, read from its grammar (the single source of truth)."""
    text = resources.files("cep.dsl").joinpath("grammar.lark").read_text("utf-8")
    return tuple(sorted(set(re.findall(r'"([a-z_]{2,})"', text))))


def field_paths(events: list[Any], limit: int = 200) -> list[str]:
    """Dotted paths of the fields in the events (nested objects too), sorted."""
    seen: set[str] = set()

    def walk(obj: dict[str, Any], prefix: str) -> None:
        for k, v in obj.items():
            if not isinstance(k, str) or len(seen) >= limit:
                continue
            path = prefix + k
            seen.add(path)
            if isinstance(v, dict) and prefix.count(".") < 3:
                walk(v, path + ".")

    for e in events:
        if isinstance(e, dict):
            walk(e, "")
    return sorted(seen)


@router.get("/console/language", response_model=LanguageInfo,
            summary="Keywords, functions, models and field names, for completion")
def language(request: Request) -> LanguageInfo:
    svc = service(request)
    recent = svc.metrics.recent
    fields = {src: field_paths(recent.events(src, limit=500)) for src in recent.sources()}
    return LanguageInfo(
        keywords=list(keywords()),
        functions=[FunctionInfo(name=n, kind="aggregate") for n in sorted(AGGREGATES)]
        + [FunctionInfo(name=n, kind="scalar") for n in sorted(SCALAR_FUNCTIONS)],
        models={k: list(v) for k, v in sorted(svc.registry.feature_names().items())},
        patterns=[e.name for e in svc.catalog.entries()],
        fields=fields, fields_from="recent_events",
    )


@router.get("/events/recent", response_model=RecentEvents,
            summary="Events the service saw lately (bounded memory)")
def recent_events(
    request: Request,
    stream: Annotated[str | None, Query(max_length=200, description="only this stream")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 1000,
) -> RecentEvents:
    recent = service(request).metrics.recent
    return RecentEvents(events=recent.events(stream, limit), sources=recent.sources())


def synthetic(n: int, seed: int, incident_rate: float) -> list[dict[str, Any]]:
    from cep.synth import generate  # numpy-heavy: only when asked

    return generate(n, seed=seed, incident_rate=incident_rate)


@router.get("/events/synthetic", response_model=SyntheticEvents,
            summary="A generated sample with labelled incidents (cep.synth)")
async def synthetic_events(
    n: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 2000,
    seed: int = 7,
    incident_rate: Annotated[float, Query(ge=0.0, le=0.1)] = 0.01,
) -> SyntheticEvents:
    events = await run_in_threadpool(synthetic, n, seed, incident_rate)
    return SyntheticEvents(events=events, labelled=sum(1 for e in events if "label" in e))


def dead_letter_reasons(request: Request) -> dict[str, int]:
    stats = collect_stats(request)
    return {k: int(v) for k, v in stats.dead_letters.items()}


@router.get("/dead-letters/recent", response_model=RecentDeadLetters,
            summary="Recent dead letters (bounded memory) and counts per reason")
def recent_dead_letters(
    request: Request,
    reason: Annotated[str | None, Query(max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> RecentDeadLetters:
    recent = service(request).metrics.recent
    return RecentDeadLetters(
        dead_letters=[RecentDeadLetter.model_validate(d) for d in recent.dead(reason, limit)],
        reasons=dead_letter_reasons(request),
    )


def collect_stats(request: Request) -> Stats:
    """The Prometheus registry's samples, summed into what the console charts."""
    svc = service(request)
    snap = engine_snapshot(svc, timeout=1.0)
    svc.metrics.recent_alerts.set(len(svc.hub))
    s = Stats(taken_ms=snap.taken_ms if snap else 0, events_in=0, alerts=0,
              alerts_by_pattern={}, partial_matches=0, partial_matches_by_pattern={},
              pending_timers=0, watermark_lag_s={}, scoring={}, dead_letters={},
              sse_subscribers=0, recent_alerts=0)
    for family in svc.metrics.registry.collect():
        for x in family.samples:
            _add_sample(s, x.name, x.labels, x.value)
    return s


def _add_sample(s: Stats, name: str, labels: dict[str, str], value: float) -> None:
    if name == "cep_events_in_total":
        s.events_in += value
    elif name == "cep_alerts_total":
        s.alerts += value
        p = labels["pattern"]
        s.alerts_by_pattern[p] = s.alerts_by_pattern.get(p, 0) + value
    elif name == "cep_partial_matches":
        s.partial_matches += value
        p = labels["pattern"]
        s.partial_matches_by_pattern[p] = s.partial_matches_by_pattern.get(p, 0) + value
    elif name == "cep_pending_timers":
        s.pending_timers += value
    elif name == "cep_watermark_lag_seconds" and labels.get("partition") == "*":
        s.watermark_lag_s[labels["clock"]] = value
    elif name in ("cep_scoring_seconds_count", "cep_scoring_seconds_sum"):
        f = s.scoring.setdefault(labels["model"], ScoringFigures(calls=0, seconds=0))
        if name.endswith("_count"):
            f.calls = value
        else:
            f.seconds = value
    elif name == "cep_dead_letters_total":
        s.dead_letters[labels["reason"]] = value
    elif name == "cep_sse_subscribers":
        s.sse_subscribers = value
    elif name == "cep_recent_alerts":
        s.recent_alerts = value


@router.get("/stats", response_model=Stats,
            summary="The service's own figures as JSON (what /metrics has), for charts")
def stats(request: Request) -> Stats:
    return collect_stats(request)
