"""Dead letters on Kafka: which records go there, and what the records look like.

Nothing is dropped silently. An input record becomes a dead letter with one reason
(the same reasons, decided the same way, in every mode):

| reason             | decided by | meaning                                                      |
|--------------------|------------|--------------------------------------------------------------|
| `malformed`        | decode     | not UTF-8 JSON, not a JSON object, or a null value           |
| `missing_time`     | engine     | the stream's time field is absent or null                    |
| `bad_time`         | engine     | the time field is not epoch ms or an ISO-8601 time with zone |
| `future_timestamp` | engine     | time beyond wall clock + `max_future_skew`; it never moves   |
|                    |            | the watermark                                                |
| `late`             | engine     | time at or before the watermark                              |
| `missing_key`      | engine     | a pattern of the stream would start on it, but no pattern    |
|                    |            | of the stream can key it (cep/runtime/keys.py)               |

The dead-letter record keeps the ORIGINAL bytes as its value and the original
record key as its key, so it can be fixed and replayed as it was; the headers carry
the fields of `DeadLetter.to_json()` (the record files and HTTP answers show) and say
where it came from (all values UTF-8):

    cep.reason            malformed, missing_time, bad_time, future_timestamp, late,
                          missing_key
    cep.detail            a short human-readable explanation
    cep.position          the position as JSON: [topic, partition, offset]
    cep.source.topic      the input topic
    cep.source.partition  the input partition (decimal)
    cep.source.offset     the input offset (decimal)
    cep.stream            the stream the topic belongs to
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from cep.runtime.records import REASONS, DeadLetter

__all__ = ["REASONS", "DeadLetterRecord", "dead_letter_record", "parse_headers"]


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
    assert dl.position is not None
    topic, partition, offset = dl.position
    rec = dl.to_json()
    headers = [
        ("cep.reason", rec["reason"].encode()),
        ("cep.detail", rec["detail"].encode("utf-8", "replace")),
        ("cep.position", orjson.dumps(rec["position"])),
        ("cep.source.topic", str(topic).encode()),
        ("cep.source.partition", str(partition).encode()),
        ("cep.source.offset", str(offset).encode()),
        ("cep.stream", stream.encode()),
    ]
    return DeadLetterRecord(raw_key, raw_value, headers)


def parse_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Headers of a dead-letter record as a dict of strings (for tools and tests)."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in headers or ()}
