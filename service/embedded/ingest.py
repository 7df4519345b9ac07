"""Decoding a `POST /events` body into a batch: a JSON array or NDJSON.

Nothing raises and nothing is dropped silently: each element or line that is not a
JSON object becomes a dead letter with reason `malformed` and says why; blank lines
are skipped. A body that starts with `[` is a JSON array; if it does not parse as one,
it is read as NDJSON (so `[1,2]\\n{...}` still gives per-line results). A single
pretty-printed JSON object is one event.
"""

from __future__ import annotations

import orjson

from cep.runtime.records import Batch, DeadLetter


def decode_body(body: bytes, request_no: int) -> Batch:
    """`request_no` numbers the request, for positions: ("http", request, index) with
    the element's index in a JSON array, the line number in NDJSON."""
    batch = Batch(partition="http")
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, list):
            for i, obj in enumerate(data):
                pos = ("http", request_no, i)
                batch.received += 1
                if obj.__class__ is dict:
                    batch.events.append(obj)
                    batch.positions.append(pos)
                else:
                    batch.dead_letters.append(DeadLetter(
                        obj, pos, "malformed",
                        f"not a JSON object but {type(obj).__name__}",
                    ))
            return batch
    if stripped.startswith(b"{") and b"\n" in stripped.rstrip():
        try:  # one pretty-printed object
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if data.__class__ is dict:
            batch.received = 1
            batch.events.append(data)
            batch.positions.append(("http", request_no, 1))
            return batch
    loads = orjson.loads
    for lineno, line in enumerate(body.split(b"\n"), 1):
        if not line.strip():
            continue
        batch.received += 1
        pos = ("http", request_no, lineno)
        try:
            obj = loads(line)
        except orjson.JSONDecodeError as exc:
            batch.dead_letters.append(DeadLetter(line, pos, "malformed",
                                                 f"invalid JSON: {exc}"))
            continue
        if obj.__class__ is not dict:
            batch.dead_letters.append(DeadLetter(
                obj, pos, "malformed",
                f"not a JSON object but {type(obj).__name__}",
            ))
            continue
        batch.events.append(obj)
        batch.positions.append(pos)
    return batch
