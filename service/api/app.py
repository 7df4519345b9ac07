"""The FastAPI application of `cep serve`.

`create_app(settings)` only wires routes, middleware and error handlers; the heavy
work (loading models and patterns, compiling, starting the engine loop) happens in
the lifespan, or before it when the caller passes an already started `ServiceState`
(`cep serve` does, so configuration errors are reported before the server binds).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from cep.errors import ModelError, PatternError
from service.api import (
    alerts,
    backtest,
    console,
    control,
    docs,
    events,
    models,
    openapi,
    ops,
    patterns,
    problems,
    streams,
)
from service.api.limits import BodyLimitMiddleware, BodyLimits
from service.api.models import ModelConflictError
from service.api.schemas import DiagnosticModel
from service.config import Settings
from service.service_state import EngineUnavailableError, ServiceState

log = logging.getLogger("cep.service")

DESCRIPTION = """\
Complex event processing for fraud detection: hot-load patterns and models, ingest
events (embedded mode), read and stream alerts. Mutating endpoints need the API token
(`Authorization: Bearer ...`) when one is configured.
"""


def create_app(
    settings: Settings,
    *,
    state: ServiceState | None = None,
    tick_s: float = 0.2,
    sse_heartbeat_s: float = 15.0,
) -> FastAPI:
    """The app. With `state`, that (started) state is used and stopped at shutdown;
    without, each lifespan builds and starts a fresh `ServiceState`."""
    own = state is None

    def fresh() -> ServiceState:
        svc = ServiceState(settings, tick_s=tick_s)
        svc.sse_heartbeat_s = sse_heartbeat_s
        return svc

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc: ServiceState = app.state.service
        if own and svc.started:  # a restart of the same app object
            svc = app.state.service = fresh()
        if not svc.started:
            await run_in_threadpool(svc.start)
        try:
            yield
        finally:
            await run_in_threadpool(svc.stop)

    app = FastAPI(title="cep", version=_version(), description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = fresh() if state is None else state
    api = settings.api
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits(
        api.max_body_bytes, api.max_open_body_bytes, api.max_test_body_bytes, api.token))
    for module in (patterns, models, events, alerts, streams, ops, backtest, console,
                   control):
        app.include_router(module.router)
    _error_handlers(app)
    openapi.install(app)
    docs.install(app)
    return app


def _error_handlers(app: FastAPI) -> None:
    problems.install(app)

    @app.exception_handler(PatternError)
    async def pattern_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PatternError)
        n = len(exc.diagnostics)
        return problems.problem(
            422, f"the pattern does not compile: {n} error{'s' if n != 1 else ''}",
            diagnostics=[DiagnosticModel.of(d).model_dump() for d in exc.diagnostics])

    @app.exception_handler(ModelError)
    async def model_error(request: Request, exc: Exception) -> JSONResponse:
        return problems.problem(422, str(exc))

    @app.exception_handler(ModelConflictError)
    async def model_conflict(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ModelConflictError)
        return problems.problem(
            409, exc.detail,
            diagnostics=[DiagnosticModel.of(d).model_dump() for d in exc.diagnostics])

    @app.exception_handler(EngineUnavailableError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return problems.problem(503, str(exc), headers={"Retry-After": "1"})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cep")
    except PackageNotFoundError:
        return "0"
