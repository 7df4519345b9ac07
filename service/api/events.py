"""`POST /events`: embedded-mode ingestion (a JSON array or NDJSON).

The body is decoded as it arrives (NDJSON line by line: `IncrementalDecoder`); bad
elements and lines become dead letters with reason `malformed`, never an error
response. It is queued to the engine loop as one batch, and the response comes
after the loop processed it: how many events were received and accepted, the dead
letters per reason (decode errors, missing or bad time, future timestamps, late)
with the first ones in detail, and how many alerts the batch gave.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from service.api.hub import dumps
from service.api.patterns import service
from service.api.responses import E401, E413, E503, problem
from service.api.schemas import EventsResponse
from service.api.security import Authorized
from service.embedded.ingest import IncrementalDecoder
from service.service_state import EngineUnavailableError

router = APIRouter(tags=["events"])

MAX_ERRORS_SHOWN = 100

EVENTS_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    "application/x-ndjson": {"schema": {"type": "string"},
                             "example": '{"card_id": "c1", "ts": 1763712000000}\n'},
}}}


@router.post(
    "/events", response_model=EventsResponse, dependencies=[Authorized],
    responses={**E401, **E413, **E503,
               **problem(409, "Kafka mode: events come from the configured topics")},
    openapi_extra=EVENTS_BODY, summary="Ingest events (embedded mode)",
    response_class=Response,
)
async def post_events(
    request: Request,
    stream: Annotated[str | None, Query(
        max_length=200, description="the stream the events belong to: patterns with "
        "`from` other streams ignore them, and the stream's time settings apply. "
        "Without it every pattern sees them.")] = None,
    partition: Annotated[str, Query(
        max_length=200, description="a source partition of the stream (each has its "
        "own watermark; the stream's watermark is their minimum)")] = "http",
) -> Response:
    svc = service(request)
    if not svc.settings.embedded:
        raise HTTPException(409, "the service runs with Kafka: produce events to the "
                            "configured topics instead")
    loop = svc.loop
    if loop is None or not svc.ready:
        raise EngineUnavailableError(svc.not_ready_reason())
    decoder = IncrementalDecoder(next(svc.requests))
    pending = 0
    async for chunk in request.stream():  # the body limit is counted by the middleware
        decoder.feed(chunk)
        pending += len(chunk)
        if pending >= 256 * 1024:  # let other requests run between large pieces
            pending = 0
            await asyncio.sleep(0)
    batch = await asyncio.to_thread(decoder.finish) if decoder.whole else decoder.finish()
    batch.stream, batch.partition = stream, partition
    async with svc.inflight:
        outcome = await asyncio.wrap_future(loop.submit(batch))
    dead = outcome.dead_letters
    answer = {
        "received": outcome.received, "accepted": outcome.accepted,
        "dead_letters": len(dead), "reasons": outcome.reasons(),
        # the same record as in the dead-letters file (`DeadLetter.to_json`)
        "errors": [d.to_json() for d in dead[:MAX_ERRORS_SHOWN]],
        "alerts": outcome.alerts,
    }
    return Response(dumps(answer), media_type="application/json")
