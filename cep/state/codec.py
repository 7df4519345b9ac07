"""The layout of engine state in a store: which key holds what.

    s\0<pattern>\0<version>\0<key JSON>   one key's runs, held matches, buffered events
    m\0engine                             watermarks, clock partitions, sequence numbers

The bytes of a key's state are made by `cep.runtime.state_codec` (this package never
imports the runtime: it stores bytes).
"""

from __future__ import annotations

from typing import Any

import orjson

STATE_PREFIX = b"s\x00"
META_PREFIX = b"m\x00"


def encode_key(key: Any) -> Any:
    return {"tuple": [encode_key(k) for k in key]} if isinstance(key, tuple) else key


def decode_key(obj: Any) -> Any:
    if isinstance(obj, dict) and "tuple" in obj:
        return tuple(decode_key(k) for k in obj["tuple"])
    return obj


def state_key(pattern: str, version: int, key: Any) -> bytes:
    return (
        STATE_PREFIX + pattern.encode() + b"\x00" + str(version).encode() + b"\x00"
        + orjson.dumps(encode_key(key))
    )


def parse_state_key(k: bytes) -> tuple[str, int, Any]:
    rest = k[len(STATE_PREFIX):]
    name, version, key = rest.split(b"\x00", 2)
    return name.decode(), int(version), decode_key(orjson.loads(key))
