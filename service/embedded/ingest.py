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
    for lineno, line in enumerate(body.split(b"\n"), 1):
        _decode_line(batch, line, lineno, request_no)
    return batch


def _decode_line(batch: Batch, line: bytes, lineno: int, request_no: int) -> None:
    if not line.strip():
        return
    batch.received += 1
    pos = ("http", request_no, lineno)
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        batch.dead_letters.append(DeadLetter(line, pos, "malformed", f"invalid JSON: {exc}"))
        return
    if obj.__class__ is not dict:
        batch.dead_letters.append(DeadLetter(
            obj, pos, "malformed", f"not a JSON object but {type(obj).__name__}",
        ))
        return
    batch.events.append(obj)
    batch.positions.append(pos)


class IncrementalDecoder:
    """`decode_body`, fed chunk by chunk as the body arrives: NDJSON is decoded line by
    line (only the current partial line is kept), so memory holds the decoded events,
    not the body too. The first non-blank line decides: when it starts with `[` (a
    JSON array), or starts with `{` but is not a JSON object by itself (a
    pretty-printed object), the body is kept whole and given to `decode_body` at the
    end. Either way the result is the same as `decode_body(body)`."""

    def __init__(self, request_no: int) -> None:
        self.request_no = request_no
        self.batch = Batch(partition="http")
        self._mode = ""  # "" undecided, "lines", "whole"
        self._kept: list[bytes] = []  # undecided / "whole": every chunk; "lines": the tail
        self._lineno = 0

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._kept.append(chunk)
        if self._mode == "whole" or b"\n" not in chunk:
            return
        data = b"".join(self._kept)
        if self._mode == "":
            self._mode = _decide(data, final=False)
            if self._mode != "lines":
                return
        complete, _, rest = data.rpartition(b"\n")
        self._kept = [rest] if rest else []
        for line in complete.split(b"\n"):
            self._lineno += 1
            _decode_line(self.batch, line, self._lineno, self.request_no)

    @property
    def whole(self) -> bool:
        """The body is kept whole (decoded by `finish`)."""
        return self._mode != "lines"

    def finish(self) -> Batch:
        data = b"".join(self._kept)
        self._kept = []
        if self._mode == "":
            self._mode = _decide(data, final=True)
        if self._mode == "whole":
            return decode_body(data, self.request_no)
        if data:
            self._lineno += 1
            _decode_line(self.batch, data, self._lineno, self.request_no)
        return self.batch


def _decide(data: bytes, *, final: bool) -> str:
    """"lines", "whole", or "" while the first non-blank line is not complete."""
    for line in data.split(b"\n")[: None if final else -1]:
        head = line.lstrip()
        if not head:
            continue
        if head.startswith(b"["):
            return "whole"
        if head.startswith(b"{"):
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                return "whole"
            return "lines" if obj.__class__ is dict else "whole"
        return "lines"
    return "whole" if final else ""
