"""The layout of engine state in a store: which key holds what.

    s\0<pattern>\0<version>\0<key JSON>   one key's runs, held matches, buffered events
    m\0engine                             watermarks, clock partitions, sequence numbers
    t\0<pattern>\0<version>\0<deadline><key JSON>
                                          a stored key's timer (written only while keys
                                          are evicted: docs/engine.md, "State larger
                                          than memory"); <deadline> is 8 bytes, big
                                          endian, biased, so keys sort in time order;
                                          the value is the exact deadline (JSON)

The bytes of a key's state are made by `cep.runtime.state_codec` (this package never
imports the runtime: it stores bytes).
"""

from __future__ import annotations

from typing import Any

import orjson

STATE_PREFIX = b"s\x00"
META_PREFIX = b"m\x00"
TIMER_PREFIX = b"t\x00"
TIMER_BIAS = 2**63


def encode_key(key: Any) -> Any:
    return {"tuple": [encode_key(k) for k in key]} if isinstance(key, tuple) else key


def decode_key(obj: Any) -> Any:
    if isinstance(obj, dict) and "tuple" in obj:
        return tuple(decode_key(k) for k in obj["tuple"])
    return obj


def key_json(key: Any) -> bytes:
    """A key as it ends a state or timer entry's store key."""
    return orjson.dumps(encode_key(key) if key.__class__ is tuple else key)


def state_prefix(pattern: str, version: int) -> bytes:
    """The prefix of one pattern version's state entries."""
    return STATE_PREFIX + pattern.encode() + b"\x00" + str(version).encode() + b"\x00"


def state_key(pattern: str, version: int, key: Any) -> bytes:
    return state_prefix(pattern, version) + key_json(key)


def parse_state_key(k: bytes) -> tuple[str, int, Any]:
    rest = k[len(STATE_PREFIX):]
    name, version, key = rest.split(b"\x00", 2)
    return name.decode(), int(version), decode_key(orjson.loads(key))


def state_key_at(k: bytes) -> int:
    """Where the key JSON of a state entry starts (after `state_prefix(...)`)."""
    return k.index(b"\x00", k.index(b"\x00", len(STATE_PREFIX)) + 1) + 1


def parse_key(k: bytes, at: int) -> Any:
    """The key of a store entry whose key JSON starts at `at`."""
    obj = orjson.loads(k[at:])
    return decode_key(obj) if obj.__class__ is dict else obj


def timer_prefix(pattern: str, version: int) -> bytes:
    """The prefix of one pattern version's timer entries."""
    return TIMER_PREFIX + pattern.encode() + b"\x00" + str(version).encode() + b"\x00"


def timer_time(deadline: float) -> bytes:
    """The 8 bytes that order timer entries: floor(deadline), biased, big endian."""
    return (int(deadline // 1) + TIMER_BIAS).to_bytes(8, "big")


def timer_key(prefix: bytes, deadline: float, key: Any) -> bytes:
    """A timer entry under `timer_prefix(...)`: ordered by deadline, then key."""
    return prefix + timer_time(deadline) + key_json(key)


def deadline_value(deadline: float) -> bytes:
    """A timer entry's value: the exact deadline, as JSON. (Not `orjson.dumps`: its
    short results keep ~4 KB resident each, see cep/runtime/state_codec.py.)"""
    return str(deadline).encode()


def parse_timer_key(prefix: bytes, k: bytes) -> tuple[int, Any]:
    """(floor of the deadline, key) of an entry under `prefix`."""
    at = len(prefix)
    return (int.from_bytes(k[at:at + 8], "big") - TIMER_BIAS,
            decode_key(orjson.loads(k[at + 8:])))
