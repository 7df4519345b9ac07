"""Kafka clients for the runner: their configuration, the topics, decode and encode.

Everything here is small and synchronous; the order of operations lives in
`service/kafka/checkpoint.py` and the loop in `service/kafka/runner.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from cep.runtime.engine import Alert, DeadLetter, Engine
from service.config import Settings
from service.kafka.record_limits import RecordLimits

log = logging.getLogger("cep.kafka")

Position = tuple[str, int, int]  # (topic, partition, offset)
TP = tuple[str, int]


# ------------------------------------------------------------------ configuration


def input_topics(settings: Settings) -> list[str]:
    """The topics the runner consumes: one per configured stream (its `topic`, else its
    name); without streams, the default stream's name."""
    if not settings.streams:
        return [settings.default_stream]
    return sorted({s.topic or name for name, s in settings.streams.items()})


def consumer_config(settings: Settings) -> dict[str, Any]:
    k = settings.kafka
    conf: dict[str, Any] = {
        "bootstrap.servers": k.bootstrap_servers,
        "group.id": k.group_id,
        # offsets are committed by the checkpoint, never in the background
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": k.auto_offset_reset,
        # cooperative-sticky: a rebalance moves only the tasks that change hands; with
        # several input topics, or repartition topics (a stream declares its
        # partition_key), `range`, which gives partition n of every topic to the same
        # process (a task reads all of them; docs/scale-out.md)
        "partition.assignment.strategy": (
            "cooperative-sticky" if len(input_topics(settings)) == 1 and all(
                s.partition_key is None for s in settings.streams.values()) else "range"),
        "enable.partition.eof": False,
        # prefetch deep enough that consume() rarely waits for a fetch: with librdkafka's
        # default (100k) the runner read ~110k records/s on the dev box, with 500k ~200k/s;
        # memory stays bounded by queued.max.messages.kbytes (64 MB by default)
        "queued.min.messages": max(500_000, 20 * k.batch_size),
    }
    if k.exactly_once:
        # only records of committed transactions (and never our own aborted output)
        conf["isolation.level"] = "read_committed"
    conf.update(k.consumer)
    return conf


def producer_config(settings: Settings, *, transactional: bool) -> dict[str, Any]:
    k = settings.kafka
    conf: dict[str, Any] = {
        "bootstrap.servers": k.bootstrap_servers,
        # idempotent: a retried produce never duplicates (at-least-once duplicates come
        # only from replaying input after a crash, and carry the same alert_id)
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    if transactional:
        conf["transactional.id"] = k.transactional_id
        conf["transaction.timeout.ms"] = k.transaction_timeout_ms
    conf.update(k.producer)
    return conf


def changelog_consumer_config(settings: Settings) -> dict[str, Any]:
    """A group-less consumer that reads the changelog (committed transactions only)."""
    k = settings.kafka
    conf: dict[str, Any] = {
        "bootstrap.servers": k.bootstrap_servers,
        "group.id": f"{k.group_id}.changelog-restore",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    for name, value in k.consumer.items():  # security settings and the like
        if name.startswith(("security.", "sasl.", "ssl.", "client.")):
            conf[name] = value
    return conf


def output_topics(settings: Settings, engine: Engine) -> set[str]:
    """Every topic the runner may produce to with the patterns loaded now."""
    return {settings.kafka.alert_topic, settings.kafka.dead_letter_topic} | engine.output_topics()


def ensure_topics(
    admin: AdminClient,
    topics: Iterable[str],
    *,
    partitions: int = 1,
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    wanted = sorted(set(topics))
    md = admin.list_topics(timeout=timeout)
    missing = [t for t in wanted if t not in md.topics]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=-1, config=config or {})
         for t in missing],
        operation_timeout=timeout, request_timeout=timeout,
    )
    created = []
    for t, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            created.append(t)
            log.info("created topic %s (%d partition(s), config %s)", t, partitions, config or {})
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    _wait_for_leaders(admin, created, timeout)
    return created


def _wait_for_leaders(admin: AdminClient, topics: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for t in topics:
        while True:
            md = admin.list_topics(topic=t, timeout=5).topics.get(t)
            if md is not None and md.error is None and md.partitions and all(
                p.leader >= 0 for p in md.partitions.values()
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {t} has no leader after {timeout}s")
            time.sleep(0.05)


# ------------------------------------------------------------------ decode


@dataclass(slots=True)
class PartitionBatch:
    """The records of one consume() call for one (topic, partition), decoded."""

    topic: str
    partition: int
    msgs: Sequence[Message]  # the whole consume() batch (all partitions)
    events: list[Any] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)  # malformed
    first_offset: int = -1
    last_offset: int = -1
    count: int = 0  # records of this partition (events + malformed)

    def raw(self, offsets: Iterable[int]) -> dict[int, Message]:
        """The original records of this partition at these offsets (for dead letters)."""
        want = set(offsets)
        out: dict[int, Message] = {}
        t, p = self.topic, self.partition
        for m in self.msgs:
            off = m.offset()
            if off is not None and off in want and m.partition() == p and m.topic() == t:
                out[off] = m
        return out


def decode(msgs: Sequence[Message], limits: RecordLimits | None = None
           ) -> tuple[dict[TP, PartitionBatch], list[KafkaError]]:
    """Group records per (topic, partition) in consume order and decode their JSON.
    A value that is not a JSON object (bad bytes, a scalar, a list, null) is a
    `malformed` dead letter; a key or value over `limits` is a `key_too_large` /
    `event_too_large` one, never decoded. Error events of the consumer are returned
    apart."""
    groups: dict[TP, PartitionBatch] = {}
    errors: list[KafkaError] = []
    loads = orjson.loads
    jerr = orjson.JSONDecodeError
    b: PartitionBatch | None = None
    _none: list[Any] = []
    ev_append: Callable[[Any], None] = _none.append  # rebound per partition below
    pos_append: Callable[[Position], None] = _none.append
    lt: str | None = None
    lp = -1
    last = -1
    for m in msgs:
        err = m.error()
        if err is not None:
            errors.append(err)
            continue
        t: str = m.topic()  # type: ignore[assignment]
        p: int = m.partition()  # type: ignore[assignment]
        off: int = m.offset()  # type: ignore[assignment]
        if p != lp or t != lt or b is None:
            if b is not None:
                b.last_offset = last
            key = (t, p)
            b = groups.get(key)
            if b is None:
                b = groups[key] = PartitionBatch(t, p, msgs, first_offset=off)
            ev_append, pos_append = b.events.append, b.positions.append
            lt, lp = t, p
        last = off
        v = m.value()
        if limits is not None:
            over = limits.check(m.key(), v)
            if over is not None:
                b.dead.append(DeadLetter(None, (t, p, off), over[0], over[1]))
                continue
        try:
            d = loads(v)  # type: ignore[arg-type]
        except (jerr, TypeError) as exc:
            detail = "null value" if v is None else f"invalid JSON: {exc}"
            b.dead.append(DeadLetter(v, (t, p, off), "malformed", detail))
            continue
        if d.__class__ is not dict:
            b.dead.append(DeadLetter(v, (t, p, off), "malformed",
                                     f"not a JSON object but {type(d).__name__}"))
            continue
        ev_append(d)
        pos_append((t, p, off))
    if b is not None:
        b.last_offset = last
    for b in groups.values():
        b.count = len(b.events) + len(b.dead)
    return groups, errors


# ------------------------------------------------------------------ encode


def alert_value(alert: Alert) -> bytes:
    return orjson.dumps(alert.record)


def alert_key(alert: Alert) -> bytes | None:
    """The pattern key, JSON-encoded ("card-42" -> b'"card-42"'); None for an unkeyed
    pattern."""
    return None if alert.key is None else orjson.dumps(alert.key)


# ------------------------------------------------------------------ producing


class Deliveries:
    """Delivery reports: failures, and per changelog partition the next offset after
    our records."""

    __slots__ = ("changelog", "changelog_next", "delivered", "failures")

    def __init__(self, changelog: str | None = None) -> None:
        self.changelog = changelog
        self.changelog_next: dict[int, int] = {}
        self.failures: list[str] = []
        self.delivered = 0

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if len(self.failures) < 20:
                self.failures.append(f"{msg.topic()}: {err.str()}")
            else:
                self.failures[-1] = f"... and more: {msg.topic()}: {err.str()}"
            return
        self.delivered += 1
        if self.changelog is not None and msg.topic() == self.changelog:
            off, p = msg.offset(), msg.partition()
            if off is not None and p is not None and off + 1 > self.changelog_next.get(p, -1):
                self.changelog_next[p] = off + 1

    def reset(self) -> None:
        self.failures = []
        self.changelog_next = {}


def produce(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    on_delivery: Any = None,
    partition: int | None = None,
) -> None:
    """produce(), waiting for room when the local queue is full (back pressure)."""
    kw: dict[str, Any] = {"on_delivery": on_delivery}
    if headers is not None:
        kw["headers"] = headers
    if partition is not None:
        kw["partition"] = partition
    while True:
        try:
            producer.produce(topic, value, key, **kw)
            return
        except BufferError:
            producer.poll(0.05)


def topic_max_message_bytes(admin: AdminClient, topic: str, timeout: float = 30.0
                            ) -> int | None:
    """The topic's `max.message.bytes` (None when it cannot be read)."""
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    try:
        res = ConfigResource("topic", topic)
        configs = admin.describe_configs([res], request_timeout=timeout)[res].result(timeout)
        entry = configs.get("max.message.bytes")
        return None if entry is None or entry.value is None else int(entry.value)
    except (KafkaException, ValueError) as exc:
        log.warning("cannot read max.message.bytes of topic %s: %s", topic, exc)
        return None
