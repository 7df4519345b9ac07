"""Request bodies bounded before they are read, as plain ASGI middleware.

Which body a request may send is decided from its method, path and `Authorization`
header alone, before one byte of the body is read (`body_policy`):

- a request to an endpoint that needs the API token (PUT/DELETE /patterns/NAME and
  /models/NAME, POST /events, POST /patterns/NAME/rollback) without the right token
  is answered 401 at once;
- with the token (or with no token configured) such a request may send up to
  `api.max_body_bytes`;
- the open endpoints that take a body have their own, smaller limits: pattern text
  for `POST /patterns/validate` (`MAX_SOURCE_BYTES` and a little), a dry run for
  `POST /patterns/test` and `POST /patterns/backtest` (`api.max_test_body_bytes`);
- every other request (GET /health, ...) may send `api.max_open_body_bytes` (small).

A declared `Content-Length` above the limit is refused (413) before anything is read.
A chunked body is read up to the limit and refused as soon as it goes over. Bodies
within the limit are read here and handed to the application in one message, except
for `POST /events`, whose body is passed on as it arrives (the route decodes NDJSON
line by line, `service.embedded.ingest.IncrementalDecoder`) with the limit still counted here.
Later `receive()` calls go to the server, so a streaming response still learns of a
client disconnect.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import HTTPException

from cep.dsl.limits import MAX_SOURCE_BYTES
from service.api.problems import MEDIA_TYPE, problem_body
from service.api.security import AUTH_MISSING, AUTH_WRONG

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_PROTECTED = (
    ("POST", re.compile(r"/events/?")),
    ("PUT", re.compile(r"/(patterns|models)/[^/]+/?")),
    ("DELETE", re.compile(r"/(patterns|models)/[^/]+/?")),
    ("POST", re.compile(r"/patterns/[^/]+/rollback/?")),
)
DRY_RUNS = ("/patterns/test", "/patterns/backtest")
VALIDATE_BODY_BYTES = MAX_SOURCE_BYTES + 64 * 1024
STREAMED = (("POST", "/events"),)



@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_body_bytes: int  # authenticated mutating requests
    max_open_body_bytes: int  # requests to endpoints that take no body (GET /health, ...)
    max_test_body_bytes: int  # POST /patterns/test
    token: str | None


@dataclass(frozen=True, slots=True)
class Policy:
    limit: int  # bytes
    refuse: str | None = None  # 401 detail: answered before the body is read
    streamed: bool = False


def protected(method: str, path: str) -> bool:
    return any(method == m and rx.fullmatch(path) for m, rx in _PROTECTED)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            scheme, _, cred = text.partition(" ")
            return cred.strip() if scheme.lower() == "bearer" else ""
    return None


def body_policy(scope: Scope, limits: BodyLimits) -> Policy:
    method, path = scope.get("method", "GET"), scope.get("path", "/")
    cap = limits.max_body_bytes
    if protected(method, path):
        token = limits.token
        if token:
            given = _bearer(scope)
            if not given:
                return Policy(0, refuse=AUTH_MISSING)
            if not hmac.compare_digest(given.encode(), token.encode()):
                return Policy(0, refuse=AUTH_WRONG)
        return Policy(cap, streamed=(method, path.rstrip("/")) in STREAMED)
    if method == "POST" and path == "/patterns/validate":
        return Policy(min(cap, VALIDATE_BODY_BYTES))
    if method == "POST" and path.rstrip("/") in DRY_RUNS:
        return Policy(min(cap, limits.max_test_body_bytes))
    return Policy(min(cap, limits.max_open_body_bytes))


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


def _too_large(limit: int) -> str:
    return (f"request body exceeds the limit of {limit} bytes for this endpoint "
            "(api.max_body_bytes and the smaller limits of docs/api.md)")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = body_policy(scope, self.limits)
        if policy.refuse is not None:
            await _answer(send, 401, policy.refuse, [(b"www-authenticate", b"Bearer")])
            return
        declared = _content_length(scope)
        if declared is not None and declared > policy.limit:
            await _answer(send, 413, _too_large(policy.limit))
            return
        if policy.streamed:
            await self.app(scope, _counting(receive, policy.limit), send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # the client went away before sending its body: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > policy.limit:
                await _answer(send, 413, _too_large(policy.limit))
                return
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _counting(receive: Receive, limit: int) -> Receive:
    """`receive` that raises `BodyTooLarge` (a 413 from the route) past `limit`."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


async def _answer(send: Send, status: int, detail: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """An RFC 9457 problem (service/api/problems.py), as every error of the API."""
    body = orjson.dumps(problem_body(status, detail))
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *(headers or []),
        ],
    })
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
