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
its time keeps that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cep.compiler.env import normalise_key, path_get
from cep.compiler.plan import CompiledPattern

KeyPaths = tuple[tuple[str, ...], ...]
Relevance = Callable[[Any, Any], bool]


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What a stream's patterns need to key an event, and whether they would use it."""

    keysets: list[KeyPaths]  # the distinct key paths of the stream's patterns
    relevant: list[Relevance]  # per keyed pattern: would it start on the event?
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

    def would_start(self, event: Any, ts: Any) -> bool:
        return any(rel(event, ts) for rel in self.relevant)


def key_check(plans: Iterable[CompiledPattern]) -> KeyCheck | None:
    """The check for the patterns that read one stream; None when no event of it can
    be a `missing_key` dead letter (no pattern reads it, or one is unkeyed)."""
    keysets: list[KeyPaths] = []
    relevant: list[Relevance] = []
    for plan in plans:
        kp = plan.key_paths
        if not kp:
            return None
        if kp not in keysets:
            keysets.append(kp)
        relevant.append(_relevance(plan))
    if not keysets:
        return None
    fields = " / ".join(", ".join(".".join(p) for p in kp) for kp in keysets)
    return KeyCheck(keysets, relevant, fields)


def _relevance(plan: CompiledPattern) -> Relevance:
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
