"""Limits on what one record may cost, so a poison record never blocks a partition.

Each limit has its own dead-letter reason (`kafka.*` settings):

| limit                    | default  | reason              | checked                        |
|--------------------------|----------|---------------------|--------------------------------|
| `max_key_bytes`          | 4 KiB    | `key_too_large`     | the record key, before decoding |
| `max_event_bytes`        | 256 KiB  | `event_too_large`   | the record value, before decoding |
| `max_state_bytes_per_key`| 512 KiB  | `state_too_large`   | a key's state at a checkpoint  |

(Runs per key stay bounded by `max_runs_per_key`: the oldest partial matches are
evicted and counted in `cep_runs_evicted_total`.)

A key whose state grew over its limit is dropped from the engine (its partial matches
and buffered events) and from the store, and a dead letter says so (no record to
attach: key = the pattern key, value = a JSON summary). Without this, the changelog
record of that key would be over the topic's `max.message.bytes` and every
checkpoint would fail (exactly-once), or the store would grow without bound.

A dead letter larger than `max_dead_letter_bytes` (the original record of a 10 MB
event, say) is written truncated: the first bytes of the value, and headers
`cep.truncated = true`, `cep.original.size`, `cep.original.sha256` (and the same
for an oversized key), instead of failing to produce it.

At start-up (exactly-once) the changelog topic's `max.message.bytes` is checked
against `max_state_bytes_per_key`: a topic that could not take a key's state is an
error with the fix, before anything is consumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cep.runtime.engine import Engine
from cep.state.codec import STATE_PREFIX, parse_state_key, state_key

# what a changelog record needs besides the state bytes (its key, headers, batch framing)
CHANGELOG_OVERHEAD = 16 * 1024


@dataclass(frozen=True, slots=True)
class RecordLimits:
    max_key_bytes: int = 4 * 1024
    max_event_bytes: int = 256 * 1024
    max_state_bytes_per_key: int = 512 * 1024
    max_dead_letter_bytes: int = 900 * 1024

    def check(self, key: bytes | None, value: bytes | None) -> tuple[str, str] | None:
        """(reason, detail) when the record is over a limit, else None."""
        if key is not None and len(key) > self.max_key_bytes:
            return "key_too_large", (f"record key of {len(key)} bytes (kafka.max_key_bytes "
                                     f"= {self.max_key_bytes})")
        if value is not None and len(value) > self.max_event_bytes:
            return "event_too_large", (f"record value of {len(value)} bytes "
                                       f"(kafka.max_event_bytes = {self.max_event_bytes})")
        return None


def limits_of(k: Any) -> RecordLimits:
    """The limits of a `KafkaConfig`."""
    return RecordLimits(k.max_key_bytes, k.max_event_bytes, k.max_state_bytes_per_key,
                        k.max_dead_letter_bytes)


def _cut(name: str, data: bytes | None, limit: int) -> tuple[bytes | None,
                                                                list[tuple[str, bytes]]]:
    if data is None or len(data) <= limit:
        return data, []
    return data[:limit], [
        (f"cep.truncated{'' if name == 'value' else '.key'}", b"true"),
        (f"cep.original{'' if name == 'value' else '.key'}.size", str(len(data)).encode()),
        (f"cep.original{'' if name == 'value' else '.key'}.sha256",
         hashlib.sha256(data).hexdigest().encode()),
    ]


def shrink_dead_letter(key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]], limits: RecordLimits
                       ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """A dead letter that fits: value and key cut to their limits, with headers saying
    how large they were and their SHA-256."""
    value, vh = _cut("value", value, limits.max_dead_letter_bytes)
    key, kh = _cut("key", key, limits.max_key_bytes)
    return key, value, headers + vh + kh


@dataclass(frozen=True, slots=True)
class OversizedState:
    pattern: str
    version: int
    key: Any
    size: int


def oversized_state(puts: Mapping[bytes, bytes | None], limit: int) -> list[OversizedState]:
    """The state puts of a checkpoint over `limit` bytes."""
    out = []
    for k, v in puts.items():
        if v is not None and len(v) > limit and k.startswith(STATE_PREFIX):
            name, version, key = parse_state_key(k)
            out.append(OversizedState(name, version, key, len(v)))
    return out


def drop_oversized_state(engine: Engine, puts: dict[bytes, bytes | None], limit: int,
                         on_dropped: Callable[[OversizedState], None]) -> int:
    """Replace every state put over `limit` with a tombstone and forget that key in the
    engine (`Engine.drop_key`); `on_dropped` for each."""
    found = oversized_state(puts, limit)
    for o in found:
        puts[state_key(o.pattern, o.version, o.key)] = None
        engine.drop_key(o.pattern, o.version, o.key)
        on_dropped(o)
    return len(found)


def state_dead_letter(o: OversizedState, limit: int) -> tuple[bytes, bytes,
                                                                list[tuple[str, bytes]]]:
    """The dead letter of a dropped key's state (there is no input record to attach)."""
    import orjson

    detail = (f"state of key {o.key!r} of {o.pattern}@{o.version} grew to {o.size} bytes "
              f"(kafka.max_state_bytes_per_key = {limit}): its partial matches were dropped")
    value = orjson.dumps({"reason": "state_too_large", "pattern": o.pattern,
                          "version": o.version, "key": o.key, "state_bytes": o.size,
                          "limit": limit}, default=str)
    headers = [("cep.reason", b"state_too_large"), ("cep.detail", detail.encode()),
               ("cep.pattern", o.pattern.encode()), ("cep.version", str(o.version).encode())]
    return orjson.dumps(o.key, default=str), value, headers


def check_changelog_limit(topic_max_message_bytes: int | None, producer_max: int,
                          limits: RecordLimits, topic: str) -> str | None:
    """Why the changelog could not take a key's largest state, or None."""
    need = limits.max_state_bytes_per_key + CHANGELOG_OVERHEAD
    if topic_max_message_bytes is not None and topic_max_message_bytes < need:
        return (f"the changelog topic {topic} has max.message.bytes = "
                f"{topic_max_message_bytes}, less than kafka.max_state_bytes_per_key "
                f"({limits.max_state_bytes_per_key}) + {CHANGELOG_OVERHEAD}: a key's state "
                f"could not be written. Raise it (kafka-configs --alter --entity-type topics "
                f"--entity-name {topic} --add-config max.message.bytes={need}) or lower "
                "kafka.max_state_bytes_per_key")
    if producer_max < need:
        return (f"the producer's message.max.bytes ({producer_max}) is less than "
                f"kafka.max_state_bytes_per_key + {CHANGELOG_OVERHEAD} = {need}: set "
                f"kafka.producer.\"message.max.bytes\" = {need} or lower the state limit")
    return None
