"""Operations: `/health` (liveness), `/ready` (readiness), `/metrics` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.patterns import engine_snapshot, service
from service.api.problems import problem
from service.api.responses import problem as problem_response
from service.api.schemas import Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health,
            responses=problem_response(503, "Kafka mode: the runner's loop is wedged"),
            summary="Liveness: the process answers (and, with Kafka, its loop comes round)")
def health(request: Request) -> Response:
    wedged = service(request).wedged()
    if wedged is not None:
        return problem(503, wedged)
    return JSONResponse({"status": "ok"})


@router.get("/ready", response_model=Ready,
            responses={503: {"model": Ready, "description": "not ready yet (or stopping)"}},
            summary="Readiness: the engine loop runs (Kafka: state restored, not stalled)")
def ready(request: Request) -> Response:
    svc = service(request)
    stalled = svc.stalled()
    svc.metrics.stalled.set(0 if stalled is None else 1)
    ok = svc.ready and stalled is None
    svc.metrics.ready.set(1 if ok else 0)
    body = Ready(ready=ok, mode="embedded" if svc.settings.embedded else "kafka",
                 detail=None if ok else stalled or svc.not_ready_reason())
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"}})
def metrics(request: Request) -> Response:
    svc = service(request)
    engine_snapshot(svc, timeout=1.0)  # fresh engine figures when the loop answers in time
    stalled = svc.stalled()
    svc.metrics.stalled.set(0 if stalled is None else 1)
    svc.metrics.ready.set(1 if svc.ready and stalled is None else 0)
    svc.metrics.recent_alerts.set(len(svc.hub))
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)
