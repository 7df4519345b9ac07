"""`missing_key`: events the patterns of a stream would use but cannot key.

An event is a `missing_key` dead letter when every pattern that reads its stream has
a `key`, none of them can key the event (the key field is missing, null, NaN, an
object or a list), and at least one of them would otherwise start a match on it (its
event-local start conditions hold, evaluated with no key). So a purchase without
`card_id` on a card-keyed stream is a dead letter, while a login without `card_id`
that no pattern would look at is ignored like any irrelevant event. When some pattern
of the stream has no `key` (one global matcher), or no pattern reads the stream, no
event is a `missing_key` dead letter.

The event had a valid, on-time timestamp, so it still advanced its partition's
watermark (it proves the partition's progress). The engine decides this in every mode
(backtest, embedded, Kafka, dry runs), after the time checks: an event refused for
its time keeps that reason. Each pattern's generated prefilter, which reads every
event's key anyway, hands over the events it cannot key but would start on (its
event-local start conditions, with no key; every unkeyed event for a pattern with
`let` values); the engine then checks that no pattern of the stream can key them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cep.program import CompiledPattern
from cep.values import normalise_key, path_get

KeyPaths = tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What a stream's patterns need to key an event."""

    keysets: list[KeyPaths]  # the distinct key paths of the stream's patterns
    fields: str  # the key fields, for the dead letter's detail

    def unkeyable(self, events: Sequence[Any]) -> list[int]:
        """Indices of the events (dicts) that no key set can key."""
        keysets = self.keysets
        if len(keysets) == 1 and len(keysets[0]) == 1 and len(keysets[0][0]) == 1:
            # the common case, one key field: one dict lookup per event
            f = keysets[0][0][0]
            return [
                i for i, d in enumerate(events)
                if (v := d.get(f)) is None or v.__class__ is dict or v.__class__ is list
                or (v.__class__ is float and v != v)  # the cases normalise_key refuses
            ]
        return [i for i, d in enumerate(events) if not any(_keyable(d, kp) for kp in keysets)]


def key_check(plans: Iterable[CompiledPattern]) -> KeyCheck | None:
    """The check for the patterns that read one stream; None when no event of it can
    be a `missing_key` dead letter (no pattern reads it, or one is unkeyed)."""
    keysets: list[KeyPaths] = []
    for plan in plans:
        kp = plan.key_paths
        if not kp:
            return None
        if kp not in keysets:
            keysets.append(kp)
    if not keysets:
        return None
    fields = " / ".join(", ".join(".".join(p) for p in kp) for kp in keysets)
    return KeyCheck(keysets, fields)


def _keyable(d: dict[str, Any], kp: KeyPaths) -> bool:
    for p in kp:
        v = d.get(p[0]) if len(p) == 1 else path_get(d, p)
        if normalise_key(v) is None:
            return False
    return True
