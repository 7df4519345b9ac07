"""`/patterns`: list, show, load or replace (hot swap), unload, validate, dry-run.

A change is compiled and checked here, in a worker thread, never on the engine's
loop; text that does not compile is refused with every diagnostic before anything
changes. The change is then applied by `service.hotload` (persist, swap on the
engine's loop at a batch boundary, catalog). `Engine.add` keeps the replaced version
running as *draining*: its partial matches finish under the version that started them,
it starts none, and it is retired when it has no state left.

In Kafka mode a change goes through the control topic instead
(service/kafka/control_follower.py): every instance of the group applies it, this one
included, and the answer comes once this instance has (`applied_at`,
`control_offset`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from cep.errors import PatternError
from cep.runtime.driver import Driver, ListSink
from cep.runtime.engine import Engine
from cep.runtime.records import Batch
from cep.runtime.snapshot import EngineSnapshot
from service.api.hub import dumps
from service.api.responses import E401, E413, E503, Responses, problem
from service.api.schemas import (
    DiagnosticModel,
    PatternChange,
    PatternDeleted,
    PatternDetail,
    PatternList,
    PatternSummary,
    PatternTestRequest,
    PatternTestResponse,
    ValidateResponse,
    VersionInfo,
)
from service.api.security import Authorized
from service.build import (
    NAME_PATTERN,
    check_source,
    compile_all,
    engine_config,
    load_patterns,
)
from service.catalog import PatternEntry
from service.hotload import (
    apply_pattern_delete,
    apply_pattern_put,
    bounded_compile,
    check_pattern,
)
from service.scoring import snapshot_scorer
from service.service_state import EngineUnavailableError, ServiceState

if TYPE_CHECKING:
    from service.kafka.control_follower import Outcome

router = APIRouter(tags=["patterns"])

PatternName = Annotated[str, Path(pattern=NAME_PATTERN, description="the pattern's name")]

TEXT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "text/plain": {"schema": {"type": "string"}, "example": "pattern p { ... }"},
}}}
TEST_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PatternTestRequest.model_json_schema()},
}}}

E404 = problem(404, "no such pattern")
E422 = problem(422, "the pattern does not compile: every diagnostic")


_PUT_RESPONSES: Responses = {
    201: {"model": PatternChange, "description": "loaded (a new name)"},
    **E401, **E413, **E422, **E503,
}


def service(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def engine_snapshot(svc: ServiceState, timeout: float = 2.0) -> EngineSnapshot | None:
    """Live figures from the engine's loop (also refreshes the metrics' copy)."""
    try:
        snap = svc.call(Engine.snapshot, timeout)
    except EngineUnavailableError:
        return None
    svc.metrics.engine.snapshot = snap
    return snap


def _versions(snap: EngineSnapshot | None, name: str) -> list[VersionInfo] | None:
    if snap is None:
        return None
    return [
        VersionInfo(version=p.version, draining=p.draining, keys=p.keys,
                    partial_matches=p.live_runs, pending_timers=p.pending_timers,
                    buffered_events=p.buffered)
        for p in snap.versions(name)
    ]


def _summary(e: PatternEntry, snap: EngineSnapshot | None) -> PatternSummary:
    return PatternSummary(
        name=e.name, version=e.version, origin="api" if e.origin == "api" else "file",
        description=e.description, models=sorted(e.models), loaded_at=e.loaded_at,
        versions=_versions(snap, e.name),
    )


@router.get("/patterns", response_model=PatternList, summary="Loaded patterns")
def list_patterns(request: Request) -> PatternList:
    svc = service(request)
    snap = engine_snapshot(svc)
    return PatternList(patterns=[_summary(e, snap) for e in svc.catalog.entries()])


@router.get("/patterns/{name}", response_model=PatternDetail, responses={**E404},
            summary="A pattern: source, versions (draining ones too), live counters")
def get_pattern(name: PatternName, request: Request) -> PatternDetail:
    svc = service(request)
    e = svc.catalog.get(name)
    if e is None:
        raise HTTPException(404, f"no pattern named {name!r} is loaded")
    snap = engine_snapshot(svc)
    p = e.plan.pattern
    return PatternDetail(
        **_summary(e, snap).model_dump(), source=e.source,
        streams=list(p.streams) if p.streams is not None else None,
        key=[".".join(k) for k in p.key],
    )


# ---------------------------------------------------------------- changes


def put_pattern_sync(svc: ServiceState, name: str, body: bytes) -> tuple[PatternChange, bool]:
    if not svc.ready:
        raise EngineUnavailableError(svc.not_ready_reason())
    check_pattern(svc, name, body)  # a bad change is refused here, before anything changes
    offset = None
    if svc.follower is None:
        put = apply_pattern_put(svc, name, body, None, svc.call)
    else:  # Kafka mode: through the control topic, to every instance of the group
        follower = svc.follower
        text = body.decode("utf-8")
        out = follower.propose(lambda: follower.pattern_put(name, text), retry=True)
        if out.status != "applied":
            raise control_refused(follower.topic, out)
        put, offset = out.result, out.offset
    change = PatternChange(name=name, version=put.version,
                           previous_version=put.previous_version, draining=put.draining,
                           applied_at=put.applied_at, control_offset=offset)
    return change, put.created


def control_refused(topic: str, out: Outcome) -> HTTPException:
    """A change written to the control topic that this instance did not apply."""
    if out.status == "refused":
        v, deleted = out.current
        return HTTPException(409, f"changed meanwhile through another instance (now version "
                                  f"{v}{', deleted' if deleted else ''}); nothing changed. "
                                  "Look again and retry")
    return HTTPException(409, f"written to the control topic {topic} (offset {out.offset}) "
                              f"but refused when applied: {out.error}")


@router.put(
    "/patterns/{name}", response_model=PatternChange, dependencies=[Authorized],
    responses=_PUT_RESPONSES,
    openapi_extra=TEXT_BODY, summary="Load or replace a pattern (hot swap)",
)
async def put_pattern(name: PatternName, request: Request, response: Response) -> PatternChange:
    """The body is the pattern text (`.cep` syntax), holding exactly one pattern named
    `name`. Replacing a pattern gives it the next version: partial matches already
    running finish under their version; new matches start under the new one."""
    svc = service(request)
    body = await request.body()
    change, created = await run_in_threadpool(put_pattern_sync, svc, name, body)
    if created:
        response.status_code = 201
    return change


def delete_pattern_sync(svc: ServiceState, name: str) -> PatternDeleted:
    if not svc.ready:
        raise EngineUnavailableError(svc.not_ready_reason())
    entry = svc.catalog.get(name)
    if entry is None:
        raise HTTPException(404, f"no pattern named {name!r} is loaded")
    offset = None
    if svc.follower is None:
        removed = apply_pattern_delete(svc, name, svc.call)
    else:
        follower = svc.follower
        version = entry.version
        out = follower.propose(lambda: follower.pattern_delete(name, version), retry=False)
        if out.status != "applied":
            raise control_refused(follower.topic, out)
        removed, offset = out.result, out.offset
    if removed is None:
        raise HTTPException(404, f"no pattern named {name!r} is loaded")
    return PatternDeleted(name=name, version=removed.version,
                          dropped_partial_matches=removed.dropped_partial_matches,
                          applied_at=removed.applied_at, control_offset=offset)


@router.delete("/patterns/{name}", response_model=PatternDeleted, dependencies=[Authorized],
               responses={**E401, **E404, **E503}, summary="Unload a pattern")
async def delete_pattern(name: PatternName, request: Request) -> PatternDeleted:
    """Every version stops at the next batch boundary; its partial matches are dropped
    (their number is returned). The pattern stays unloaded after a restart."""
    return await run_in_threadpool(delete_pattern_sync, service(request), name)


# ---------------------------------------------------------------- dry runs


def validate_sync(svc: ServiceState, body: bytes) -> ValidateResponse:
    try:
        patterns, diags = check_source(body, svc.registry.feature_names(),
                                       schemas=svc.schemas)
        if not any(d.severity == "error" for d in diags):
            bounded_compile(svc, body)
    except PatternError as err:
        return ValidateResponse(ok=False, patterns=[],
                                diagnostics=[DiagnosticModel.of(d) for d in err.diagnostics])
    return ValidateResponse(
        ok=not any(d.severity == "error" for d in diags),
        patterns=[p.name for p in patterns],
        diagnostics=[DiagnosticModel.of(d) for d in diags],
    )


@router.post("/patterns/validate", response_model=ValidateResponse, responses={**E413},
             openapi_extra=TEXT_BODY, summary="Check pattern text; diagnostics only")
async def validate_patterns(request: Request) -> ValidateResponse:
    """Errors and warnings, each with line, column, message and a caret snippet.
    Nothing is loaded."""
    body = await request.body()
    return await run_in_threadpool(validate_sync, service(request), body)


def test_sync(svc: ServiceState, body: bytes) -> bytes:
    try:
        req = PatternTestRequest.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError) as err:
        raise HTTPException(422, f"the body must be a JSON object with `source` (pattern "
                            f"text) and `events` (a list of events): {err}") from None
    bounded_compile(svc, req.source.encode())
    patterns = load_patterns(req.source, svc.registry.feature_names(), schemas=svc.schemas)
    engine = Engine(compile_all(patterns), engine_config(svc.settings),
                    scorer=snapshot_scorer(svc.registry), track_changes=False)
    out = ListSink()
    driver = Driver(engine, [out])
    n = len(req.events)
    driver.step(Batch(list(req.events), [("test", i) for i in range(n)], stream=req.stream,
                      partition="test", received=n))
    if req.finish:
        driver.finish()
    cap = svc.settings.api.max_test_alerts
    answer = {
        "patterns": [p.name for p in patterns],
        "alerts": [a.record for a in out.alerts[:cap]],
        "alerts_omitted": max(0, len(out.alerts) - cap),
        "dead_letters": [d.to_json() for d in out.dead_letters[:cap]],
        "dead_letters_omitted": max(0, len(out.dead_letters) - cap),
    }
    return dumps(answer)


@router.post("/patterns/test", response_model=PatternTestResponse,
             responses={**E413, **E422}, openapi_extra=TEST_BODY,
             summary="Dry run: pattern text over posted events, returns the alerts")
async def test_patterns(request: Request) -> Response:
    """Runs in a throwaway engine with the service's time settings and models; no
    state of the service is touched. The body may be up to `api.max_test_body_bytes`;
    the answer holds at most `api.max_test_alerts` alerts and as many dead letters,
    with the number left out in `alerts_omitted` / `dead_letters_omitted`. With
    `finish` (default) the input ends after the events, so windows and `on timeout`
    fire."""
    body = await request.body()
    data = await run_in_threadpool(test_sync, service(request), body)
    return Response(data, media_type="application/json")
