"""Request and response bodies of the API (pydantic models, hence the OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from cep.errors import Diagnostic


class DiagnosticModel(BaseModel):
    """One problem in a pattern source (1-based line and column, caret snippet)."""

    file: str | None = None
    line: int
    column: int
    end_line: int
    end_column: int
    severity: str = "error"
    code: str
    message: str
    snippet: str = ""
    hint: str | None = None

    @classmethod
    def of(cls, d: Diagnostic) -> DiagnosticModel:
        return cls.model_validate(d.to_json())


class Problem(BaseModel):
    """Every error response, as RFC 9457 problem details (`application/problem+json`):
    `detail` says what went wrong and what to do; a pattern that does not compile also
    lists its `diagnostics`, an invalid request its validation `errors`."""

    type: str = Field("about:blank", description="a URI naming the problem type")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what went wrong and what to do")
    diagnostics: list[DiagnosticModel] | None = Field(
        None, description="every problem of a pattern source, with line and column")
    errors: list[dict[str, Any]] | None = Field(
        None, description="request validation errors (location, message)")


# an alert record; service/openapi.py replaces this marker with a reference to the
# alert's JSON Schema (components.schemas.Alert, from cep/schemas/alert.schema.json)
ALERT_MARKER = "x-cep-alert"
Alert = Annotated[dict[str, Any], WithJsonSchema({"type": "object", ALERT_MARKER: True})]


# ---------------------------------------------------------------- patterns


class VersionInfo(BaseModel):
    version: int
    draining: bool = Field(description="replaced: finishing the partial matches it started")
    keys: int = Field(description="keys with state")
    partial_matches: int
    pending_timers: int
    buffered_events: int = Field(description="events waiting for the watermark")


class PatternSummary(BaseModel):
    name: str
    version: int = Field(description="the version that starts new matches")
    origin: Literal["file", "api"]
    description: str | None = None
    models: list[str] = Field(default_factory=list)
    loaded_at: str
    versions: list[VersionInfo] | None = Field(
        None, description="live figures of every running version (the current one and any "
        "draining ones); null when the engine did not answer in time")


class PatternDetail(PatternSummary):
    source: str
    streams: list[str] | None = None
    key: list[str] = Field(default_factory=list)


class PatternList(BaseModel):
    patterns: list[PatternSummary]


# when a change took effect on the instance that answers (PUT / DELETE answers)
APPLIED_AT = Field(
    default=None, description="when the change took effect on this instance (a batch boundary)")
CONTROL_OFFSET = Field(
    default=None, description="Kafka mode: the change's offset in the control topic; every "
                              "instance of the group applies it")


class PatternChange(BaseModel):
    name: str
    version: int
    previous_version: int | None = None
    draining: list[int] = Field(default_factory=list,
                                description="older versions still finishing partial matches")
    applied_at: str | None = APPLIED_AT
    control_offset: int | None = CONTROL_OFFSET


class PatternDeleted(BaseModel):
    name: str
    version: int
    dropped_partial_matches: int
    applied_at: str | None = APPLIED_AT
    control_offset: int | None = CONTROL_OFFSET


class ValidateResponse(BaseModel):
    ok: bool
    patterns: list[str]
    diagnostics: list[DiagnosticModel]


class PatternTestRequest(BaseModel):
    source: str = Field(description="pattern text (one or more patterns)")
    events: list[Any] = Field(description="events (JSON objects) in the order to feed them")
    stream: str | None = Field(None, description="the stream the events come from")
    finish: bool = Field(True, description="end the input: windows and timeouts fire")


class DeadLetterModel(BaseModel):
    """One dead letter, the same record in every mode (`DeadLetter.to_json`): `event`
    is the decoded event, `raw` the original text of input that was not JSON. Nothing
    is dropped silently."""

    reason: str = Field(description="malformed | schema | missing_time | bad_time | "
                        "future_timestamp | late | missing_key")
    detail: str = Field("", description="what exactly was wrong, e.g. the field that "
                        "violates the schema or the likely time unit")
    position: list[Any] | None = Field(
        None, description='where it came from: ["http", request, index], [file, line], '
        '[topic, partition, offset], ["test", index]')
    event: Any = None
    raw: str | None = None


class PatternTestResponse(BaseModel):
    patterns: list[str]
    alerts: list[Alert] = Field(description="the first `api.max_test_alerts` alerts")
    alerts_omitted: int = Field(0, description="alerts not returned (over the cap)")
    dead_letters: list[DeadLetterModel]
    dead_letters_omitted: int = Field(0, description="dead letters not returned")


# ---------------------------------------------------------------- models


class FeatureModel(BaseModel):
    name: str
    type: str
    default: float


class ModelInfo(BaseModel):
    name: str
    version: int = Field(description="the manifest's version")
    loaded_version: int = Field(description="counts loads of this name in this process")
    file: str
    sha256: str
    output: str
    features: list[FeatureModel]
    description: str | None = None
    used_by: list[str] = Field(default_factory=list)
    applied_at: str | None = APPLIED_AT
    control_offset: int | None = CONTROL_OFFSET


class ModelList(BaseModel):
    models: list[ModelInfo]
    problems: dict[str, str] = Field(default_factory=dict,
                                     description="models that failed to load at start-up")


class ModelDeleted(BaseModel):
    name: str
    applied_at: str | None = APPLIED_AT
    control_offset: int | None = CONTROL_OFFSET


# ---------------------------------------------------------------- events and alerts


class EventsResponse(BaseModel):
    received: int = Field(description="events in the body (elements or non-blank lines)")
    accepted: int = Field(description="events the engine took (received - dead letters)")
    dead_letters: int
    reasons: dict[str, int] = Field(description="dead letters per reason")
    errors: list[DeadLetterModel] = Field(description="the first dead letters, with details")
    alerts: int = Field(description="alerts emitted while processing this batch")


class AlertEnvelope(BaseModel):
    id: int = Field(description="sequence id in this process (the SSE id)")
    topic: str | None = Field(description="where the alert went: the pattern's `emit to` "
                              "topic, else the alert topic (null in embedded mode)")
    alert: Alert


class AlertList(BaseModel):
    alerts: list[AlertEnvelope]
    last_id: int
    oldest_id: int | None


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    mode: Literal["embedded", "kafka"]
    detail: str | None = None
    restoring: list[int] = Field(default_factory=list)  # tasks restoring their state


class TaskInfo(BaseModel):
    task: int  # the input partition number
    state: Literal["restoring", "running"]
    partitions: list[dict[str, Any]]  # topic, partition, position (next offset read)
    lag: int | None = None  # records behind the partitions' ends (None: not known yet)
    restore: dict[str, Any]  # start, end (changelog offsets), records, done


class Tasks(BaseModel):
    mode: Literal["embedded", "kafka"]
    tasks_total: int | None  # the input partition count (None: not started / embedded)
    tasks: list[TaskInfo]
