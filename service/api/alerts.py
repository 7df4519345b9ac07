"""`GET /alerts` (the recent-alerts buffer) and `GET /alerts/stream` (server-sent events).

SSE: each alert is one event, `id:` its sequence id, `event: alert`, `data:` the alert
JSON. A client that reconnects with `Last-Event-ID` (browsers' EventSource does it by
itself) first gets the buffered alerts after that id, then the live ones: it misses
nothing unless it was away for longer than the buffer holds, in which case an
`event: gap` says which ids were lost. A comment line every `heartbeat` seconds keeps
proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from service.api.hub import AlertFilter, HubItem, dumps
from service.api.patterns import service
from service.api.schemas import AlertList, Problem

router = APIRouter(tags=["alerts"])

Pattern = Annotated[str | None, Query(max_length=200, description="only this pattern")]
Key = Annotated[str | None, Query(max_length=1000,
                                  description="only this key (composite keys: a,b)")]
Severity = Annotated[str | None, Query(max_length=50, description="only this severity")]


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_since(since: str | None) -> tuple[int | None, int | None]:
    """(after_id, since_ms): an alert id, or an ISO-8601 time (UTC when no zone)."""
    if since is None or since == "":
        return None, None
    if _is_id(since):
        return int(since), None
    try:
        t = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"since must be an alert id or an ISO-8601 time, got "
                            f"{since!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return None, int(t.timestamp() * 1000)


@router.get("/alerts", response_model=AlertList,
            responses={422: {"model": Problem, "description": "bad `since`"}},
            summary="Recent alerts (bounded buffer)")
def get_alerts(
    request: Request,
    pattern: Pattern = None,
    key: Key = None,
    severity: Severity = None,
    since: Annotated[str | None, Query(
        max_length=64, description="alerts after this id, or received at/after this "
        "ISO-8601 time; pages forward (the oldest `limit` first)")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    """Without `since`, the newest `limit` alerts; with it, the next `limit` after it.
    Oldest first either way. `last_id` is the newest id the service has given out."""
    hub = service(request).hub
    after_id, since_ms = parse_since(since)
    items = hub.recent(AlertFilter(pattern, key, severity), after_id=after_id,
                       since_ms=since_ms, limit=limit, newest=since is None or since == "")
    body = b'{"alerts":[%s],"last_id":%d,"oldest_id":%s}' % (
        b",".join(i.envelope() for i in items), hub.last_id, dumps(hub.oldest_id()),
    )
    return Response(body, media_type="application/json")


def sse(item: HubItem) -> bytes:
    return b"id: %d\nevent: alert\ndata: %s\n\n" % (item.id, item.data)


@router.get(
    "/alerts/stream", response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "server-sent events: `event: alert`, `id:` the "
                     "alert's sequence id, `data:` the alert JSON"},
               422: {"model": Problem, "description": "bad Last-Event-ID"}},
    summary="Alerts as server-sent events (resumable)",
)
async def stream_alerts(
    request: Request,
    pattern: Pattern = None,
    key: Key = None,
    severity: Severity = None,
    last_event_id: Annotated[str | None, Header(
        alias="Last-Event-ID", max_length=32,
        description="resume after this alert id")] = None,
    after: Annotated[int | None, Query(
        ge=0, description="resume after this alert id (for clients that cannot set "
        "Last-Event-ID)")] = None,
) -> StreamingResponse:
    svc = service(request)
    hub = svc.hub
    resume = after
    if last_event_id not in (None, ""):
        if not _is_id(last_event_id.strip()):
            raise HTTPException(422, "Last-Event-ID must be an alert id (an integer)")
        resume = int(last_event_id.strip())
    flt = AlertFilter(pattern, key, severity)
    heartbeat = svc.sse_heartbeat_s

    async def events() -> AsyncIterator[bytes]:
        # subscribed here, not in the handler: a generator that never starts (the client
        # left at once) never runs its `finally`, and would leak the subscription
        sub = hub.subscribe(asyncio.get_running_loop())
        svc.metrics.sse_subscribers.inc()
        try:
            yield b"retry: 2000\n\n"
            sent = hub.last_id if resume is None else resume
            if resume is not None:
                if resume > hub.last_id:
                    resume_from = 0  # ids restarted with the service: send the buffer
                else:
                    resume_from = resume
                oldest = hub.oldest_id()
                if oldest is not None and resume_from + 1 < oldest:
                    gap = {"from": resume_from + 1, "to": oldest - 1}
                    yield b"event: gap\ndata: %s\n\n" % dumps(gap)
                backlog = hub.recent(after_id=resume_from)
                out = [sse(i) for i in backlog if flt(i)]
                if out:
                    yield b"".join(out)
                sent = backlog[-1].id if backlog else resume_from
            while True:
                try:
                    items = await asyncio.wait_for(sub.get(), timeout=heartbeat)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if items is None:
                    return
                out = [sse(i) for i in items if i.id > sent and flt(i)]
                if items:
                    sent = max(sent, items[-1].id)
                if out:
                    yield b"".join(out)
        finally:
            hub.unsubscribe(sub)
            svc.metrics.sse_subscribers.dec()

    return StreamingResponse(
        events(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
