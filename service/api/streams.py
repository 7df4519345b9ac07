"""`GET /streams`: the configured streams, their time settings and declared schemas
(for clients such as an editor's field completion; docs/streams.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from service.api.patterns import service

router = APIRouter(tags=["streams"])


class StreamInfo(BaseModel):
    name: str
    topic: str = Field(description="the Kafka topic (Kafka mode)")
    time_field: str
    time_unit: str = Field(description="ms | s | us | iso")
    assume_utc: bool
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="the declared fields as JSON Schema, or null")


class StreamList(BaseModel):
    streams: list[StreamInfo]
    default_stream: str = Field(description="the stream of events posted without ?stream=")


@router.get("/streams", response_model=StreamList, response_model_by_alias=True,
            summary="Configured streams, their time settings and declared schemas")
def list_streams(request: Request) -> StreamList:
    svc = service(request)
    out = []
    for name, cfg in sorted(svc.settings.streams.items()):
        schema = svc.schemas.get(name)
        out.append(StreamInfo(
            name=name, topic=cfg.topic or name, time_field=cfg.time_field,
            time_unit=cfg.time_unit, assume_utc=cfg.assume_utc,
            schema=schema.to_json_schema() if schema is not None else None))
    return StreamList(streams=out, default_stream=svc.settings.default_stream)
