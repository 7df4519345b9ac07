"""One error shape for every error response: RFC 9457 problem details
(`application/problem+json`): `type`, `title`, `status`, `detail`, plus the extension
members `diagnostics` (a pattern that does not compile) and `errors` (request
validation)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, detail: str, **extensions: Any) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail}
    body.update({k: v for k, v in extensions.items() if v is not None})
    return body


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None,
            **extensions: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, **extensions), status_code=status,
                        media_type=MEDIA_TYPE, headers=headers)


def _where(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def install(app: FastAPI) -> None:
    """Framework errors (HTTPException, request validation) as problem details."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem(exc.status_code, detail, headers=dict(exc.headers or {}) or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = jsonable_encoder(exc.errors())
        detail = "; ".join(f"{_where(e.get('loc', ()))}: {e.get('msg', '')}" for e in errors)
        return problem(422, f"invalid request: {detail}", errors=errors)
