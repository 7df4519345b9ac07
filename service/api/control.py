"""`GET /control`: this instance's view of the control topic (Kafka mode): how far it
has read and what it applied, refused or could not apply (docs/scale-out.md,
"Hot-load across instances"). Instances that read to the same offset and report no
failures have the same patterns and models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from service.api.patterns import service

router = APIRouter(tags=["operations"])


class ControlStatus(BaseModel):
    shared: bool = Field(description="changes go through the control topic (Kafka mode "
                                     "with kafka.share_changes)")
    topic: str | None = None
    instance: str | None = Field(default=None, description="this instance's writer id")
    position: int | None = Field(default=None, description="the next offset it will read")
    applied: int = Field(default=0, description="records applied since start")
    refused: int = Field(default=0, description="records that did not advance their name")
    failed: dict[int, str] = Field(
        default_factory=dict,
        description="offset -> why this instance could not apply that record (it runs "
                    "without that change: fix the cause and send the change again)")


@router.get("/control", response_model=ControlStatus,
            summary="The control topic as this instance has read and applied it")
def control_status(request: Request) -> ControlStatus:
    f = service(request).follower
    if f is None:
        return ControlStatus(shared=False)
    return ControlStatus(shared=True, topic=f.topic, instance=f.instance,
                         position=f.topic_log.position, applied=f.applied,
                         refused=f.refused, failed=dict(f.failed))
