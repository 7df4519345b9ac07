"""A small server-sent-events parser (the WHATWG event-stream format), for clients."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None
    retry_ms: int | None = None


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Events from the lines of a stream (without their line breaks). `retry:` lines
    are reported as an event of type `retry` with `retry_ms` set."""
    event, last_id = "", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield SseEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id" and "\0" not in value:
            last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            yield SseEvent("retry", "", last_id, int(value))
