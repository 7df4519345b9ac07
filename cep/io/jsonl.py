"""JSON Lines sources and sinks (plain or gzip), in batches.

A source yields `Batch`es: the decoded events, their positions (file, line), and dead
letters for lines that are not JSON objects (holding the line's original bytes).
Nothing is dropped silently: a blank line is skipped, everything else either decodes
or becomes a dead letter with the reason. The sinks are `cep.runtime.driver.Sink`s.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from cep.runtime.records import Alert, Batch, DeadLetter, Result

DEFAULT_BATCH = 4096


def open_binary(path: str | Path) -> IO[bytes]:
    p = str(path)
    if p == "-":
        return sys.stdin.buffer
    if p.endswith(".gz"):
        return gzip.open(p, "rb")  # type: ignore[return-value]
    return open(p, "rb")


def read_jsonl(path: str | Path, batch_size: int = DEFAULT_BATCH) -> Iterator[Batch]:
    name = str(path)
    loads = orjson.loads
    with open_binary(path) as f:
        batch = Batch()
        for lineno, line in enumerate(f, 1):
            batch.nbytes += len(line)
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except orjson.JSONDecodeError as exc:
                batch.dead_letters.append(DeadLetter(
                    line.rstrip(b"\r\n"), (name, lineno), "malformed", f"invalid JSON: {exc}",
                ))
                continue
            if obj.__class__ is not dict:
                batch.dead_letters.append(DeadLetter(
                    obj, (name, lineno), "malformed", f"not a JSON object but {type(obj).__name__}"
                ))
                continue
            batch.events.append(obj)
            batch.positions.append((name, lineno))
            if len(batch.events) >= batch_size:
                batch.received = len(batch.events) + len(batch.dead_letters)
                yield batch
                batch = Batch()
        if batch.events or batch.dead_letters:
            batch.received = len(batch.events) + len(batch.dead_letters)
            yield batch


def open_text_out(path: str | Path | None) -> IO[bytes]:
    if path is None or str(path) == "-":
        return sys.stdout.buffer
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".gz":
        return gzip.open(p, "wb")  # type: ignore[return-value]
    return io.BufferedWriter(io.FileIO(p, "w"))


class JsonlSink:
    """Writes alert records (or any dicts) as JSON Lines."""

    def __init__(self, path: str | Path | None) -> None:
        self._f = open_text_out(path)
        self._own = path is not None and str(path) != "-"
        self.count = 0

    def write_alerts(self, alerts: Iterable[Alert]) -> None:
        dumps = orjson.dumps
        for a in alerts:
            self._f.write(dumps(a.record, option=orjson.OPT_APPEND_NEWLINE))
            self.count += 1

    def write_records(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            opts = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
            self._f.write(orjson.dumps(r, option=opts))
            self.count += 1

    def close(self) -> None:
        self._f.flush()
        if self._own:
            self._f.close()


class AlertFileSink:
    """Alert records to a JSONL file (or stdout), as a driver sink."""

    def __init__(self, path: str | Path | None) -> None:
        self.out = JsonlSink(path)

    def write(self, result: Result, batch: Batch | None) -> None:
        if result.alerts:
            self.out.write_alerts(result.alerts)

    def close(self) -> None:
        self.out.close()


class DeadLetterFileSink:
    """Dead letters to a JSONL file, one `DeadLetter.to_json()` record a line."""

    def __init__(self, path: str | Path) -> None:
        self.out = JsonlSink(path)

    def write(self, result: Result, batch: Batch | None) -> None:
        if result.dead_letters:
            self.out.write_records(d.to_json() for d in result.dead_letters)

    def close(self) -> None:
        self.out.close()
