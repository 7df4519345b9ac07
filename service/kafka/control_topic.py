"""The control topic: pattern and model changes shared by every instance of a group.

`<group_id>.control`: one partition (one order for every change), compacted, created
on start. A change made through the API of any instance is validated by that instance,
then written here; every instance (the writer too) reads the topic and applies the
changes in offset order. Design and the reasons: docs/scale-out.md, "Hot-load across
instances".

A record's key is `KIND/NAME/INSTANCE` (kind `pattern` or `model`; INSTANCE the
writer's id), its value a JSON object:

    {"kind": "pattern", "name": "p", "op": "put", "version": 4, "source": "...",
     "instance": "a", "request": "<uuid>", "at": "2026-...Z"}
    {"kind": "model", "name": "m", "op": "put", "version": 2, "manifest": "{...}",
     "model_b64": "...", ...}
    {"kind": "pattern", "name": "p", "op": "delete", "version": 4, ...}

`version` is the state the change leads to: a put of version v makes v the current
version; a delete of version v removes version v (a later put has v+1). The
**offset order decides** (`advances`): a record applies only if (version, deleted)
is greater than the name's current (version, deleted), so of two instances that both
proposed version 4 the first record in the topic makes version 4 and the second is
refused (its writer proposes again with version 5). Keys carry the writer's instance
id so that compaction, which keeps the last record per key, can never replace the
record that won a version by a refused one with the same version; the state a new
instance reads (`final_states`) is therefore the state the running instances have.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cep.errors import CepError
from service.config import Settings
from service.kafka.io import ensure_topics, producer_config

log = logging.getLogger("cep.control")

KINDS = ("pattern", "model")
OPS = ("put", "delete")
# room around the largest upload (`api.max_body_bytes`): base64 (4/3) and the JSON
ENVELOPE_BYTES = 64 * 1024


class ControlRecordError(CepError):
    """A control-topic record this version of cep cannot read."""


class ControlTopicError(CepError):
    """The control topic cannot be created, read or written."""


@dataclass(frozen=True)
class ControlRecord:
    kind: str  # "pattern" | "model"
    name: str
    op: str  # "put" | "delete"
    version: int
    instance: str  # the writer's instance id
    request: str  # unique per proposal: the writer finds its own record by it
    at: str = ""  # when it was written (ISO, UTC)
    source: str = ""  # pattern put: the text
    manifest: bytes = b""  # model put: manifest.json
    model: bytes = b""  # model put: the skops archive (validated again by every reader)

    @property
    def deleted(self) -> bool:
        return self.op == "delete"

    @property
    def state(self) -> tuple[int, bool]:
        return (self.version, self.deleted)

    @property
    def key(self) -> bytes:
        return f"{self.kind}/{self.name}/{self.instance}".encode()


def new_record(kind: str, name: str, op: str, version: int, instance: str,
               **payload: Any) -> ControlRecord:
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return ControlRecord(kind, name, op, version, instance, uuid.uuid4().hex, at, **payload)


def encode(rec: ControlRecord) -> bytes:
    body: dict[str, Any] = {
        "kind": rec.kind, "name": rec.name, "op": rec.op, "version": rec.version,
        "instance": rec.instance, "request": rec.request, "at": rec.at,
    }
    if rec.kind == "pattern" and rec.op == "put":
        body["source"] = rec.source
    if rec.kind == "model" and rec.op == "put":
        body["manifest"] = rec.manifest.decode("utf-8")
        body["model_b64"] = base64.b64encode(rec.model).decode("ascii")
    return orjson.dumps(body)


def decode(value: bytes | None) -> ControlRecord:
    """A record's value; `ControlRecordError` says what is wrong with it."""
    if value is None:
        raise ControlRecordError("a tombstone (null value)")
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        raise ControlRecordError(f"not JSON: {err}") from None
    if not isinstance(d, dict):
        raise ControlRecordError("not a JSON object")
    try:
        kind, name, op, version = d["kind"], d["name"], d["op"], d["version"]
        instance, request = d["instance"], d["request"]
    except KeyError as err:
        raise ControlRecordError(f"no field {err}") from None
    if kind not in KINDS or op not in OPS:
        raise ControlRecordError(f"unknown kind {kind!r} or op {op!r}")
    if not isinstance(name, str) or not isinstance(version, int) or version < 0:
        raise ControlRecordError("name must be a string and version an integer >= 0")
    rec = ControlRecord(kind, name, op, version, str(instance), str(request), str(d.get("at", "")))
    if op == "put" and kind == "pattern":
        source = d.get("source")
        if not isinstance(source, str):
            raise ControlRecordError("a pattern put without its source")
        rec = replace(rec, source=source)
    elif op == "put":
        manifest, data = d.get("manifest"), d.get("model_b64")
        if not isinstance(manifest, str) or not isinstance(data, str):
            raise ControlRecordError("a model put without its manifest and model")
        try:
            model = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ControlRecordError(f"model_b64 is not base64: {err}") from None
        rec = replace(rec, manifest=manifest.encode("utf-8"), model=model)
    return rec


def advances(rec: ControlRecord, current: tuple[int, bool]) -> bool:
    """Whether `rec` changes a name whose state is `current` (version, deleted):
    a put of a newer version, or the delete of the current (or a newer) version."""
    return rec.state > current


def final_states(records: Iterable[ControlRecord]) -> dict[tuple[str, str], ControlRecord]:
    """Per (kind, name), the record that holds its state after every record, in offset
    order (the first record that reached the highest state)."""
    out: dict[tuple[str, str], ControlRecord] = {}
    for rec in records:
        k = (rec.kind, rec.name)
        cur = out.get(k)
        if cur is None or advances(rec, cur.state):
            out[k] = rec
    return out


def control_topic(settings: Settings) -> str:
    return f"{settings.kafka.group_id}.control"


def max_record_bytes(settings: Settings) -> int:
    """The largest record: a model upload of `api.max_body_bytes`, base64-encoded."""
    return settings.api.max_body_bytes * 4 // 3 + ENVELOPE_BYTES


CONTROL_CONFIG = {
    "cleanup.policy": "compact",
    # compaction may remove superseded records soon; never delete by age
    "retention.ms": "-1",
    "min.compaction.lag.ms": "0",
}


class ControlLog:
    """The control topic: create it, read it to its end, write a record, follow it."""

    def __init__(self, settings: Settings) -> None:
        k = settings.kafka
        assert k.bootstrap_servers is not None
        self.settings = settings
        self.topic = control_topic(settings)
        self.max_bytes = max_record_bytes(settings)
        self._security = {n: v for n, v in k.consumer.items()
                          if n.startswith(("security.", "sasl.", "ssl.", "client."))}
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self.position = 0  # the next offset to read

    def _base(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.settings.kafka.bootstrap_servers, **self._security}

    def ensure(self) -> None:
        """Create the topic when it is missing (one partition, compacted)."""
        admin = AdminClient(self._base())
        try:
            md = admin.list_topics(timeout=30)
            have = md.topics.get(self.topic)
            if have is not None and have.error is None:
                if len(have.partitions) != 1:
                    raise ControlTopicError(
                        f"the control topic {self.topic} has {len(have.partitions)} "
                        "partitions; it must have exactly one (one order for every change). "
                        "Delete it (every instance stopped) and start again")
                return
            if not self.settings.kafka.create_topics:
                raise ControlTopicError(
                    f"the control topic {self.topic} does not exist and kafka.create_topics "
                    "is off: create it with 1 partition and cleanup.policy=compact")
            ensure_topics(admin, [self.topic], partitions=1,
                          config={**CONTROL_CONFIG, "max.message.bytes": str(self.max_bytes)})
        except KafkaException as exc:
            raise ControlTopicError(f"control topic {self.topic}: {exc}") from None

    def reader_config(self) -> dict[str, Any]:
        """A group-less reader (assigned partition 0, never commits) that takes the
        largest record."""
        fetch_max = max(52_428_800, self.max_bytes)
        return {
            **self._base(),
            "group.id": f"{self.settings.kafka.group_id}.control-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.message.max.bytes": self.max_bytes,
            "fetch.max.bytes": fetch_max,
            "receive.message.max.bytes": fetch_max + 1024 * 1024,
        }

    def writer_config(self) -> dict[str, Any]:
        conf = producer_config(self.settings, transactional=False)
        conf.pop("transactional.id", None)
        conf["message.max.bytes"] = self.max_bytes + ENVELOPE_BYTES
        conf["linger.ms"] = 0
        return conf

    def _open_consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self.reader_config())
            self._consumer.assign([TopicPartition(self.topic, 0, self.position)])
        return self._consumer

    def end_offset(self) -> int:
        c = self._open_consumer()
        _, high = c.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=30,
                                          cached=False)
        return int(high)

    def read_to_end(self, timeout_s: float = 120.0) -> list[tuple[int, ControlRecord]]:
        """Every record from the current position to the topic's end now, in order;
        unreadable records are logged and skipped."""
        end = self.end_offset()
        out: list[tuple[int, ControlRecord]] = []
        deadline = time.monotonic() + timeout_s
        while self.position < end:
            if time.monotonic() > deadline:
                raise ControlTopicError(
                    f"reading the control topic {self.topic} to offset {end} took longer "
                    f"than {timeout_s:.0f}s (at offset {self.position})")
            out += self.poll(0.5)
        return out

    def poll(self, timeout_s: float) -> list[tuple[int, ControlRecord]]:
        c = self._open_consumer()
        out: list[tuple[int, ControlRecord]] = []
        for m in c.consume(100, timeout_s):
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("control topic %s: %s", self.topic, err)
                continue
            offset = m.offset()
            assert offset is not None
            self.position = offset + 1
            try:
                out.append((offset, decode(m.value())))
            except ControlRecordError as exc:
                log.error("control topic %s offset %d skipped: %s", self.topic, offset, exc)
        return out

    def write(self, rec: ControlRecord, timeout_s: float = 30.0) -> int:
        """Write `rec` (acks=all, idempotent); returns its offset."""
        if self._producer is None:
            self._producer = Producer(self.writer_config())
        result: list[Any] = []

        def delivered(err: KafkaError | None, msg: Any) -> None:
            result.append(err if err is not None else msg.offset())

        self._producer.produce(self.topic, encode(rec), rec.key, on_delivery=delivered)
        self._producer.flush(timeout_s)
        if not result:
            raise ControlTopicError(f"writing to the control topic {self.topic} timed out")
        if isinstance(result[0], KafkaError):
            raise ControlTopicError(f"writing to the control topic {self.topic}: {result[0]}")
        offset: int = result[0]
        return offset

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None

