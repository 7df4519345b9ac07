"""Repartition topics: patterns keyed otherwise than their input topic (docs/scale-out.md,
"Repartitioning").

A stream declares the field(s) its topic is partitioned by (`partition_key` in
`[streams.<name>]`). Every pattern reading the stream whose key is another one reads it
through an internal **repartition topic** (a *hop*), as in Kafka Streams:

    <group_id>-<stream>-by-<key>-repartition     (as many partitions as the input)

The runner forwards each event it decodes from the input topic to the hop of every
such key, in the same transaction (exactly-once) as the input offsets it came from:
the original bytes, record key = the pattern key (JSON, as alert keys are), partition
= crc32(key) mod the partition count (an event the key cannot key goes to the
partition number it came from: the patterns after the hop judge it, nothing is
dropped before the hop), header `cep.source` = `topic:partition:offset`. The hop's
partitions are consumed as tasks like the input's: task n reads partition n of the
input topics and of the hops. The engine is told which patterns a batch is for
(`Batch.route`, cep/runtime/records.py): the input topic's batches go to the patterns
keyed like the topic, the hop's to the patterns of its key. Time (late, future,
missing or bad time), schema and `missing_key` are judged once per pattern, after the
hop for the patterns that read through it.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Message

from cep.runtime.engine import Engine
from cep.runtime.records import Batch, DeadLetter, KeyPaths, KeyRoute
from cep.state.store import StateStore
from cep.values import normalise_key, path_get
from service.config import Settings
from service.kafka.io import PartitionBatch, input_topics
from service.kafka.tasks import PartitionMismatchError

log = logging.getLogger("cep.kafka")

SOURCE_HEADER = "cep.source"
# dead-letter reasons that depend on the event alone (reported by one path)
EVENT_FAULTS = frozenset({"schema", "missing_time", "bad_time", "future_timestamp"})
# hops are like any input: the broker's retention applies (docs/operations.md)
REPARTITION_CONFIG = {"cleanup.policy": "delete"}

# (topic, value, key, headers, partition): the runner's produce (in the open
# transaction in exactly-once mode)
Send = Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes]], int], None]


def declared_key(value: str | list[str] | None) -> KeyPaths | None:
    """A stream's `partition_key` as key paths: None when not declared; () for ""
    or [] (records partitioned by no field); else one dotted path per field."""
    if value is None:
        return None
    fields = [value] if isinstance(value, str) else list(value)
    return tuple(tuple(f.split(".")) for f in fields if f)


def key_name(key: KeyPaths) -> str:
    return "+".join(".".join(p) for p in key)


def topic_name(group_id: str, stream: str, key: KeyPaths) -> str:
    """The hop of `stream` for patterns keyed by `key` (Kafka Streams' naming:
    `<application.id>-<name>-repartition`). Characters a topic name cannot hold become
    `_`, and then a hash of the exact name follows, so that two names never meet."""
    name = f"{group_id}-{stream}-by-{key_name(key)}"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if safe != name:
        safe = f"{safe[:220]}-{zlib.crc32(name.encode()):08x}"
    return f"{safe}-repartition"


def key_bytes(event: dict[str, object], key: KeyPaths) -> bytes | None:
    """The event's pattern key as record key bytes (as the engine keys it: 1.0 and 1
    are one key); None when the key is missing, null or structured."""
    vals = []
    for p in key:
        v = normalise_key(event.get(p[0]) if len(p) == 1 else path_get(event, p))
        if v is None:
            return None
        vals.append(v)
    return orjson.dumps(vals[0] if len(vals) == 1 else vals)


def partition_for(key: bytes, partitions: int) -> int:
    """The hop partition of a record key: deterministic, the same in every process."""
    return zlib.crc32(key) % partitions


@dataclass(frozen=True)
class Hop:
    stream: str
    key: KeyPaths
    topic: str


@dataclass(frozen=True)
class RepartitionPlan:
    """The hops the loaded patterns need, and which patterns read which topic."""

    hops: tuple[Hop, ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()  # (input topic, stream) of streams with hops
    direct: frozenset[str] = frozenset()  # streams with hops that patterns also read directly

    def topics(self) -> list[str]:
        return sorted({h.topic for h in self.hops})

    def hops_from(self, stream: str) -> list[Hop]:
        return [h for h in self.hops if h.stream == stream]

    def stream_of(self, topic: str) -> str | None:
        """The stream a hop carries (None for any other topic)."""
        for h in self.hops:
            if h.topic == topic:
                return h.stream
        return None

    def route(self, topic: str) -> KeyRoute | None:
        """Which patterns read `topic`'s batches: a hop's, only those of its key; an
        input topic with hops, all but those; None for any other topic."""
        for h in self.hops:
            if h.topic == topic:
                return KeyRoute(frozenset([h.key]), through=True)
        for t, stream in self.inputs:
            if t == topic:
                return KeyRoute(frozenset(h.key for h in self.hops_from(stream)),
                                through=False)
        return None

    def judged_here(self, topic: str, dead: list[DeadLetter]) -> list[DeadLetter]:
        """The dead letters of a batch of `topic` that this path reports. An event's own
        faults (schema, missing / bad / future time) are the same on every path that
        reads it: the input path reports them when patterns read the stream directly,
        else the stream's first hop; `late` and `missing_key` depend on the patterns of
        the path and are reported by each path that refuses the event."""
        stream = self.stream_of(topic)
        if stream is None or not dead:
            return dead
        if stream not in self.direct and self.hops_from(stream)[0].topic == topic:
            return dead
        return [d for d in dead if d.reason not in EVENT_FAULTS]

    def batches(self, stream: str, b: PartitionBatch, marks: SourceMarks | None = None
                ) -> list[Batch]:
        """The engine batches of one partition's records: one, with the patterns that
        read its topic (`route`); a hop's, one per source partition, without the
        records seen already (`by_source`)."""
        route = self.route(b.topic)
        t, p = b.topic, b.partition
        if route is None or not route.through:
            return [Batch(b.events, b.positions, b.dead, stream=stream, partition=(t, p),
                          received=b.count, origin=b, task=p, route=route)]
        return [Batch(part.events, part.positions, part.dead, stream=stream,
                      partition=(t, p, src), received=part.count, origin=part, task=p,
                      route=route) for src, part in by_source(b, marks)]

    def clock_partitions(self, tps: Iterable[tuple[str, int]], sources: int
                         ) -> list[tuple[Any, ...]]:
        """The watermark partitions of assigned partitions: a hop's partition is one
        per source partition (`(hop, n, source)`); any other, itself."""
        out: list[tuple[Any, ...]] = []
        for t, p in tps:
            if self.stream_of(t) is None:
                out.append((t, p))
            else:
                out += [(t, p, src) for src in range(sources)]
        return out


def plan_repartitions(settings: Settings, engine: Engine) -> RepartitionPlan:
    """Per stream that declares its `partition_key`: a hop for every other key of the
    patterns that read it (unkeyed patterns read the input topic)."""
    hops: list[Hop] = []
    inputs: list[tuple[str, str]] = []
    direct: set[str] = set()
    for name, sc in sorted(settings.streams.items()):
        declared = declared_key(sc.partition_key)
        if declared is None:
            keys = {k for k in engine.stream_keys(name) if k}
            if len(keys) > 1:
                log.info("stream %s: patterns keyed by %s read topic %s; each key's events "
                         "must be in one partition (else declare the topic's partition_key "
                         "and the others read through a repartition topic)", name,
                         ", ".join(sorted(key_name(k) for k in keys)), sc.topic or name)
            continue
        mine = [Hop(name, k, topic_name(settings.kafka.group_id, name, k))
                for k in sorted(engine.stream_keys(name)) if k and k != declared]
        if mine:
            hops += mine
            inputs.append((sc.topic or name, name))
            if len(mine) < len(engine.stream_keys(name)):
                direct.add(name)
    return RepartitionPlan(tuple(hops), tuple(inputs), frozenset(direct))


def check_counts(counts: dict[str, int], topics: Iterable[str], tasks: int, *,
                 create: bool = True) -> None:
    """Existing hops must have the input's partition count (task n reads partition n);
    missing ones are created on start (`create`), else refused."""
    for t in topics:
        have = counts.get(t)
        if have is None and not create:
            raise PartitionMismatchError(
                f"the repartition topic {t} does not exist and kafka.create_topics is off: "
                f"create it with {tasks} partition(s) (the input's count)")
        if have is not None and have != tasks:
            raise PartitionMismatchError(
                f"the repartition topic {t} has {have} partition(s) but the input has "
                f"{tasks}: task n reads partition n of it. Stop every instance and delete "
                f"{t} (it is recreated with {tasks} partitions; records not yet read from "
                "it are lost: drain it first), or give the service a new kafka.group_id.")


def subscription(settings: Settings, plan: RepartitionPlan) -> list[str]:
    """The topics the consumer reads: the input topics and the hops."""
    return sorted(set(input_topics(settings)) | set(plan.topics()))


class SourceMarks:
    """Per hop partition and source partition: the last source offset read after the
    hop. At-least-once, a replay before the hop (a crash after records were forwarded
    but before the input offsets were committed) forwards records again; after the hop
    they are dropped as seen. The marks are task state: stored and changelogged with
    the task's checkpoint (`r\0<hop>\0<partition>\0<source>`), reloaded with it."""

    PREFIX = b"r\x00"

    def __init__(self) -> None:
        self._marks: dict[int, dict[tuple[str, int, int], int]] = {}
        self._dirty: dict[int, set[tuple[str, int, int]]] = {}
        self.duplicates = 0

    def load(self, task: int, store: StateStore) -> None:
        marks: dict[tuple[str, int, int], int] = {}
        for k, v in store.items(self.PREFIX):
            hop, part, src = k[len(self.PREFIX):].split(b"\x00")
            marks[(hop.decode(), int(part), int(src))] = int(v)
        self._marks[task] = marks
        self._dirty[task] = set()

    def drop(self, task: int) -> None:
        self._marks.pop(task, None)
        self._dirty.pop(task, None)

    def fresh(self, task: int, mark: tuple[str, int, int], offset: int) -> bool:
        """Not seen yet (and now seen)."""
        marks = self._marks.setdefault(task, {})
        if offset <= marks.get(mark, -1):
            self.duplicates += 1
            return False
        marks[mark] = offset
        self._dirty.setdefault(task, set()).add(mark)
        return True

    def puts(self, task: int) -> dict[bytes, bytes | None]:
        """The marks changed since the last call, as store puts (for the checkpoint)."""
        dirty = self._dirty.get(task)
        if not dirty:
            return {}
        marks = self._marks[task]
        out: dict[bytes, bytes | None] = {
            self.PREFIX + f"{hop}\x00{part}\x00{src}".encode(): str(marks[(hop, part, src)])
            .encode() for hop, part, src in dirty}
        dirty.clear()
        return out


def by_source(b: PartitionBatch, marks: SourceMarks | None = None
              ) -> list[tuple[int, PartitionBatch]]:
    """A hop's batch split per source partition (`cep.source`), in order within each:
    the watermark after the hop is the minimum over the source partitions, as it is
    over the input partitions without a hop (Flink's per-channel watermarks), so the
    interleaving of the sources in the hop makes no event late. Records `marks` has
    seen are dropped. Every part ends at the batch's last offset (the next offset to
    read is the batch's); the first carries the batch's decode dead letters and counts
    the dropped records as received."""
    raw = b.raw(pos[2] for pos in b.positions)
    parts: dict[int, PartitionBatch] = {}
    dropped = 0
    for d, pos in zip(b.events, b.positions, strict=True):
        src, src_off = _source(raw[pos[2]].headers(), b.partition)
        if marks is not None and src_off >= 0 and not marks.fresh(
                b.partition, (b.topic, b.partition, src), src_off):
            dropped += 1
            continue
        part = parts.get(src)
        if part is None:
            part = parts[src] = PartitionBatch(b.topic, b.partition, b.msgs,
                                               first_offset=b.first_offset,
                                               last_offset=b.last_offset)
        part.events.append(d)
        part.positions.append(pos)
    out = sorted(parts.items())
    if not out:  # nothing new: an empty part still moves the offset on
        out = [(b.partition, PartitionBatch(b.topic, b.partition, b.msgs,
                                            first_offset=b.first_offset,
                                            last_offset=b.last_offset))]
    out[0][1].dead = b.dead
    for _, part in out:
        part.count = len(part.events) + len(part.dead)
    out[0][1].count += dropped
    if dropped:
        log.info("%s[%d]: %d record(s) forwarded again (a replay before the hop) dropped",
                 b.topic, b.partition, dropped)
    return out


def forwarded_from(m: Message) -> list[tuple[str, bytes]]:
    """A dead letter's header naming the input record a hop record was forwarded from
    (`cep.repartition.source` = `topic:partition:offset`); none for other records."""
    headers: Any = m.headers()  # a list of (name, value) as the consumer gives them
    for name, value in headers or ():
        if name == SOURCE_HEADER and isinstance(value, bytes):
            return [("cep.repartition.source", value)]
    return []


def _source(headers: Any, default: int) -> tuple[int, int]:
    """(source partition, source offset) of a hop record; (default, -1) without it."""
    for name, value in headers or ():
        if name == SOURCE_HEADER and value:
            try:
                _, part, off = value.rsplit(b":", 2)
                return int(part), int(off)
            except ValueError:
                break
    return default, -1


class Forwarder:
    """Sends the events of the input batches to their hops."""

    def __init__(self, plan: RepartitionPlan, partitions: int, send: Send) -> None:
        self.plan = plan
        self.partitions = partitions
        self.send = send
        self.forwarded = 0

    def forward(self, stream: str, b: PartitionBatch) -> int:
        """Forward the batch's events (its decoded events: malformed records are dead
        letters of the input path) to the hops of `stream`; returns how many records."""
        hops = self.plan.hops_from(stream)
        if not hops or not b.events or self.plan.stream_of(b.topic) is not None:
            return 0
        raw = b.raw(pos[2] for pos in b.positions)
        n = self.partitions
        sent = 0
        for d, (t, p, off) in zip(b.events, b.positions, strict=True):
            value = raw[off].value()
            headers = [(SOURCE_HEADER, f"{t}:{p}:{off}".encode())]
            for h in hops:
                k = key_bytes(d, h.key)
                self.send(h.topic, value, k, headers, p % n if k is None else partition_for(k, n))
                sent += 1
        self.forwarded += sent
        return sent
