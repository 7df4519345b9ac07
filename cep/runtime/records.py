"""What crosses the engine's boundary: batches in; alerts and dead letters out.

One `Batch` type for every source (files, HTTP, Kafka, tests), one `DeadLetter`
record for every reason and every mode, rendered one way (`DeadLetter.to_json`):
in dead-letter files, in HTTP answers, and (as headers beside the original bytes)
on the Kafka dead-letter topic.

Positions say where an input came from, always as a tuple whose first element names
the source: `(file, line)`, `("http", request, index)`, `(topic, partition, offset)`,
`("test", index)`. Within one batch positions are comparable, so "input order" is
"position order".
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

Position = tuple[Any, ...]

# why an input became a dead letter (docs/semantics.md, "Dead letters")
REASONS = ("malformed", "schema", "missing_time", "bad_time", "future_timestamp", "late",
           "missing_key",
           # Kafka mode's record limits (service/kafka/record_limits.py, service/kafka/poison.py)
           "key_too_large", "event_too_large", "state_too_large", "poison")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input the engine did not take, and why. Nothing is dropped silently.

    `event` is the decoded event, or the ORIGINAL bytes when it could not be decoded
    (so it can be fixed and replayed as it was)."""

    event: Any
    position: Position | None
    reason: str  # one of REASONS
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The one rendering: {reason, detail, position, event} (or `raw`, the original
        text, for input that was not JSON)."""
        rec: dict[str, Any] = {
            "reason": self.reason,
            "detail": self.detail,
            "position": None if self.position is None else list(self.position),
        }
        ev = self.event
        if isinstance(ev, (bytes, bytearray, memoryview)):
            rec["raw"] = bytes(ev).decode("utf-8", "replace")
        else:
            rec["event"] = ev
        return rec


class Alert:
    """An alert record (the JSON object of docs/alerts.md) and where it goes."""

    __slots__ = ("key", "record", "topic")

    def __init__(self, topic: str | None, key: Any, record: dict[str, Any]) -> None:
        self.topic = topic
        self.key = key
        self.record = record

    def __repr__(self) -> str:
        r = self.record
        return f"Alert({r['pattern']}, {r['kind']}, key={r['key']!r}, time={r['time']})"


KeyPaths = tuple[tuple[str, ...], ...]  # a pattern's key: its field paths (() unkeyed)


@dataclass(frozen=True, slots=True)
class KeyRoute:
    """Which of its stream's patterns a batch is for, by pattern key (repartitioning,
    docs/scale-out.md). `through=True`: the batch comes through the repartition topic
    of these keys, only the patterns keyed by one of them read it; `through=False`: the
    batch comes from the input topic, every pattern of the stream except those reads it."""

    keys: frozenset[KeyPaths]
    through: bool

    def admits(self, key_paths: KeyPaths) -> bool:
        return (key_paths in self.keys) == self.through


@dataclass
class Batch:
    """Decoded events from one source partition, in arrival order.

    `dead_letters` are the inputs the decoder refused (`malformed`); `received`
    counts every input of the batch (events + refused); `origin` is the source's own
    handle on the raw input (a Kafka sink finds the original records through it)."""

    events: list[Any] = field(default_factory=list)
    positions: list[Any] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    stream: str | None = None
    partition: Hashable = 0
    received: int = 0
    nbytes: int = 0
    origin: Any = None
    task: int | None = None  # the partition task (an engine with open tasks routes by it)
    route: KeyRoute | None = None  # None: every pattern of the stream (see KeyRoute)

    @property
    def source(self) -> str:
        """The name metrics use for where the batch came from."""
        return self.stream or "default"


@dataclass
class Result:
    """What one batch (or a tick, or the end of input) produced. Dead letters are in
    input order: the decoder's and the engine's merged by position."""

    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def extend(self, other: Result) -> None:
        self.alerts.extend(other.alerts)
        self.dead_letters.extend(other.dead_letters)


# the name engine callers used before `Result`
BatchResult = Result
