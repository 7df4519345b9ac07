"""Dead letters in Kafka mode: which events go there, and what the records look like.

Nothing is dropped silently. An input record becomes a dead letter with one reason:

| reason             | decided by | meaning                                                      |
|--------------------|------------|--------------------------------------------------------------|
| `malformed`        | decode     | not UTF-8 JSON, not a JSON object, or a null value           |
| `missing_time`     | engine     | the stream's time field is absent or null                    |
| `bad_time`         | engine     | the time field is not epoch ms or an ISO-8601 time with zone |
| `future_timestamp` | engine     | time beyond wall clock + `max_future_skew`; it never moves   |
|                    |            | the watermark                                                |
| `late`             | engine     | time at or before the watermark                              |
| `missing_key`      | runner     | a pattern of the stream would start on it, but no pattern    |
|                    |            | of the stream can key it                                     |

`missing_key` is decided after the engine saw the event: the event had a valid,
on-time timestamp, so it still advanced its partition's watermark (it proves the
partition's progress). It is a dead letter when every pattern that reads the stream
has a `key`, none of them can key the event (the key field is missing, null, an
object or a list), and at least one of them would otherwise start a match on it (its
event-local start conditions hold, evaluated with no key). So a purchase without
`card_id` on a card-keyed stream is a dead letter, while a login without `card_id`
that no pattern would look at is ignored like any irrelevant event. When some pattern
of the stream has no `key` (one global matcher), or no pattern reads the stream, no
event is a `missing_key` dead letter.

The dead-letter record keeps the ORIGINAL bytes as its value and the original
record key as its key, so it can be fixed and replayed as it was; the headers say
where it came from and why (all values UTF-8):

    cep.reason            malformed, missing_time, bad_time, future_timestamp, late,
                          missing_key
    cep.detail            a short human-readable explanation
    cep.source.topic      the input topic
    cep.source.partition  the input partition (decimal)
    cep.source.offset     the input offset (decimal)
    cep.stream            the stream the topic belongs to
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cep.compiler.env import normalise_key, path_get, to_ms
from cep.runtime.engine import DeadLetter, Engine

REASONS = ("malformed", "missing_time", "bad_time", "future_timestamp", "late", "missing_key")

KeyPaths = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One record for the dead-letter topic."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter_record(
    dl: DeadLetter, raw_key: bytes | None, raw_value: bytes | None, stream: str
) -> DeadLetterRecord:
    """The Kafka record for `dl`, whose position is (topic, partition, offset)."""
    topic, partition, offset = dl.position
    headers = [
        ("cep.reason", dl.reason.encode()),
        ("cep.detail", dl.detail.encode("utf-8", "replace")),
        ("cep.source.topic", str(topic).encode()),
        ("cep.source.partition", str(partition).encode()),
        ("cep.source.offset", str(offset).encode()),
        ("cep.stream", stream.encode()),
    ]
    return DeadLetterRecord(raw_key, raw_value, headers)


def parse_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers of a dead-letter record as a dict of strings (for tools and tests)."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers or ()}


# -- missing_key


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What a stream's patterns need to key an event, and whether they would use it."""

    keysets: list[KeyPaths]  # the distinct key paths of the stream's patterns
    relevant: list[Callable[[Any, Any], bool]]  # per keyed pattern: would it start on it?


def stream_key_check(engine: Engine, stream: str) -> KeyCheck | None:
    """None when no event of the stream can be a `missing_key` dead letter: no pattern
    reads it, or one of them is unkeyed (one global matcher takes every event)."""
    keysets: list[KeyPaths] = []
    relevant: list[Callable[[Any, Any], bool]] = []
    for rt in engine.runtimes:
        if not rt.applies(stream):
            continue
        plan = rt.plan
        kp = plan.key_paths
        if not kp:
            return None
        if kp not in keysets:
            keysets.append(kp)
        relevant.append(_relevance(plan))
    return KeyCheck(keysets, relevant) if keysets else None


def _relevance(plan: Any) -> Callable[[Any, Any], bool]:
    """The pattern's event-local start test (its generated `start_rel`), with no key.
    Patterns with `let` values need them for the test: every event counts as relevant."""
    if plan.let_names:
        return lambda d, ts: True
    start_rel = plan.start_rel

    def rel(d: Any, ts: Any) -> bool:
        try:
            return start_rel(d, ts, None, None) is True
        except Exception:  # generated code is total; a bug guard, never a lost event
            return True

    return rel


def _keyable(d: dict[str, Any], kp: KeyPaths) -> bool:
    for p in kp:
        v = d.get(p[0]) if len(p) == 1 else path_get(d, p)
        if normalise_key(v) is None:
            return False
    return True


def unkeyable(events: Sequence[dict[str, Any]], keysets: list[KeyPaths]) -> list[int]:
    """Indices of the events that no key set can key."""
    if len(keysets) == 1 and len(keysets[0]) == 1 and len(keysets[0][0]) == 1:
        # the common case, one key field: one dict lookup per event
        f = keysets[0][0][0]
        return [
            i for i, d in enumerate(events)
            if (v := d.get(f)) is None or v.__class__ is dict or v.__class__ is list
            or (v.__class__ is float and v != v)  # normalise_key, inlined
        ]
    return [
        i for i, d in enumerate(events) if not any(_keyable(d, kp) for kp in keysets)
    ]


def missing_key_letters(
    events: Sequence[dict[str, Any]],
    positions: Sequence[Any],
    check: KeyCheck | None,
    engine_dead: Sequence[DeadLetter],
    time_field: tuple[str, ...] = ("ts",),
) -> list[DeadLetter]:
    """`missing_key` dead letters: events the engine accepted that no pattern of the
    stream can key although one of them would start a match on it (an event that no
    pattern would use is ignored, as the engine ignores every irrelevant event). An
    event the engine refused keeps the engine's reason."""
    if check is None or not events:
        return []
    idx = unkeyable(events, check.keysets)
    if not idx:
        return []
    refused = {d.position for d in engine_dead} if engine_dead else set()
    fields = " / ".join(", ".join(".".join(p) for p in kp) for kp in check.keysets)
    out = []
    for i in idx:
        pos = positions[i]
        if pos in refused:
            continue
        d = events[i]
        ts = to_ms(path_get(d, time_field))
        if any(rel(d, ts) for rel in check.relevant):
            out.append(DeadLetter(d, pos, "missing_key",
                                  f"no usable key ({fields}) for the patterns of the stream"))
    return out
