"""Console endpoints on patterns: backtest with comparison, version history, roll back.

- `POST /patterns/backtest` (no token: nothing of the service changes) runs pattern
  text over a sample (posted events, recent events, or generated ones) in a throwaway
  engine, and with `compare` also the deployed versions of the same pattern names on
  the same events: alerts, alerts per key, precision and recall against labels,
  labelled incidents for a timeline, and the detections gained and lost. Bounded: at
  most `dry_run.MAX_EVENTS` events, run in a worker thread.
- `GET /patterns/{name}/history`: every version the service has run, with its text.
- `POST /patterns/{name}/rollback` (token): load an earlier version's text again. It
  becomes a *new* version (version numbers are never reused: alert ids hash them), and
  the current version drains like after any `PUT`.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from cep.values import to_ms
from service import dry_run
from service.api.console import synthetic
from service.api.console_schemas import (
    BacktestRequest,
    BacktestResponse,
    Comparison,
    HistoryVersion,
    Incident,
    KeyCount,
    PatternHistoryResponse,
    RollbackRequest,
)
from service.api.patterns import (
    PatternName,
    engine_snapshot,
    put_pattern_sync,
    service,
)
from service.api.responses import E401, E413, E503, problem
from service.api.schemas import DeadLetterModel, PatternChange
from service.api.security import Authorized
from service.build import load_patterns
from service.hotload import bounded_compile
from service.service_state import ServiceState

router = APIRouter(tags=["patterns"])

E404 = problem(404, "no such pattern or version")
E422 = problem(422, "the pattern does not compile (every diagnostic), or a bad request")
BACKTEST_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": BacktestRequest.model_json_schema()},
}}}


def sample_events(svc: ServiceState, req: BacktestRequest) -> list[Any]:
    if req.events is not None:
        if len(req.events) > dry_run.MAX_EVENTS:
            raise HTTPException(422, f"a backtest takes at most {dry_run.MAX_EVENTS} events; "
                                f"got {len(req.events)}")
        return req.events
    if req.sample == "recent":
        return svc.metrics.recent.events(req.stream, req.n)
    if req.sample == "synthetic":
        return synthetic(req.n, req.seed, req.incident_rate)
    raise HTTPException(422, "give `events`, or `sample`: `recent` or `synthetic`")


def backtest_sync(svc: ServiceState, body: bytes) -> BacktestResponse:
    t0 = time.perf_counter()
    try:
        req = BacktestRequest.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError) as err:
        raise HTTPException(422, f"the body must be a JSON object with `source` and "
                            f"`events` or `sample`: {err}") from None
    models = svc.registry.feature_names()
    bounded_compile(svc, req.source.encode())
    patterns = load_patterns(req.source, models)
    events = sample_events(svc, req)
    stream = req.stream
    edited = dry_run.run_patterns(patterns, events, svc.settings, svc.registry, stream)
    names = [p.name for p in patterns]

    comparisons: list[Comparison] = []
    if req.compare:
        for name in names:
            entry = svc.catalog.get(name)
            if entry is None:
                continue
            old = dry_run.run([entry.plan], events, svc.settings, svc.registry, stream)
            new = [a for a in edited.alerts if a.get("pattern") == name]
            gained, lost = dry_run.diff(new, old.alerts)
            comparisons.append(Comparison(
                pattern=name, deployed_version=entry.version, deployed_alerts=len(old.alerts),
                edited_alerts=len(new), gained=gained[:100], lost=lost[:100],
                gained_count=len(gained), lost_count=len(lost),
            ))

    times = [t for t in (to_ms(e.get(req.time_field)) for e in events
                         if isinstance(e, dict)) if t is not None]
    reasons = Counter(str(d["reason"]) for d in edited.dead_letters)
    return BacktestResponse(
        patterns=names, events=len(events),
        alerts=edited.alerts[:dry_run.MAX_ALERTS_SHOWN], alert_count=len(edited.alerts),
        per_key=[KeyCount.model_validate(k)
                 for k in dry_run.per_key(edited.alerts)[:dry_run.MAX_KEYS_SHOWN]],
        dead_letters=[DeadLetterModel.model_validate(d) for d in edited.dead_letters[:100]],
        dead_letter_reasons=dict(reasons),
        scores=dry_run.scores(events, edited.alerts, req.label_field, names),
        incidents=[Incident.model_validate(i) for i in dry_run.incidents(
            events, req.label_field, req.time_field, edited.alerts, names)],
        comparisons=comparisons,
        first_ms=min(times) if times else None, last_ms=max(times) if times else None,
        elapsed_ms=round((time.perf_counter() - t0) * 1000, 1),
    )


@router.post("/patterns/backtest", response_model=BacktestResponse,
             responses={**E413, **E422}, openapi_extra=BACKTEST_BODY,
             summary="Backtest pattern text on a sample; compare with the deployed version")
async def backtest(request: Request) -> Response:
    """Runs in throwaway engines with the service's time settings and models; no state
    of the service is touched. The input ends after the sample (windows and timeouts
    fire). Events are fed in the order given."""
    body = await request.body()
    res = await run_in_threadpool(backtest_sync, service(request), body)
    return Response(res.model_dump_json(), media_type="application/json")


@router.get("/patterns/{name}/history", response_model=PatternHistoryResponse,
            responses={**E404}, summary="Every version of a pattern the service has run")
def history(name: PatternName, request: Request) -> PatternHistoryResponse:
    svc = service(request)
    versions = svc.catalog.history.versions(name)
    entry = svc.catalog.get(name)
    if not versions and entry is None:
        raise HTTPException(404, f"the service has never run a pattern named {name!r}")
    snap = engine_snapshot(svc)
    draining = {p.version for p in snap.versions(name) if p.draining} if snap else set()
    current = entry.version if entry else None
    return PatternHistoryResponse(name=name, current_version=current, versions=[
        HistoryVersion(version=v.version, origin=v.origin, loaded_at=v.loaded_at,
                       source=v.source, current=v.version == current,
                       draining=v.version in draining)
        for v in reversed(versions)
    ])


def rollback_sync(svc: ServiceState, name: str, body: bytes) -> tuple[PatternChange, bool]:
    try:
        req = RollbackRequest.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError) as err:
        raise HTTPException(422, f"the body must be {{\"version\": N}}: {err}") from None
    old = svc.catalog.history.get(name, req.version)
    if old is None:
        raise HTTPException(404, f"no version {req.version} of {name!r} in the history")
    return put_pattern_sync(svc, name, old.source.encode())


@router.post("/patterns/{name}/rollback", response_model=PatternChange,
             dependencies=[Authorized], responses={**E401, **E404, **E413, **E422, **E503},
             summary="Load an earlier version's text again (as a new version)")
async def rollback(name: PatternName, request: Request, response: Response) -> PatternChange:
    """Body `{"version": N}`. The text of version N becomes the next version; the
    current one drains. Also restores a deleted pattern."""
    body = await request.body()
    change, created = await run_in_threadpool(rollback_sync, service(request), name, body)
    if created:
        response.status_code = 201
    return change
