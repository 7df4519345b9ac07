"""`generate`: world, incidents and near misses, background, then ids in time order."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import numpy.typing as npt

from cep.gc_pause import paused_gc
from cep.synth.background import Block, make_background
from cep.synth.incidents import INCIDENTS
from cep.synth.near_misses import NEAR_MISSES
from cep.synth.planner import Planner
from cep.synth.shapes import Event
from cep.synth.timeline import Timeline, span_for
from cep.synth.world import World

DEFAULT_START_MS = 1_763_712_000_000  # 2025-11-21 08:00:00 UTC

# Independent random streams, so that e.g. changing an injector leaves the background alone.
_STREAM_WORLD = 1
_STREAM_BACKGROUND = 2
_STREAM_INCIDENTS = 3


def generate(
    n_events: int,
    seed: int = 7,
    n_keys: int | None = None,
    start_ms: int = DEFAULT_START_MS,
    incident_rate: float = 0.002,
) -> list[dict[str, Any]]:
    """A seeded synthetic fraud stream of exactly `n_events` events, sorted by time.

    Events are ordered by (`ts`, position) and their `id` is `"e"` + the zero-padded
    position (`e000000042`). `n_keys` is the number of cards (default `n_events // 10`);
    users (~0.8 per card) and merchants scale with it, orders and sessions with
    `n_events`. The stream spans about one day when every card has ~10 events (the
    default), between 2 hours and 30 days otherwise. `incident_rate` is the number of
    injected incidents per event: round(n_events * incident_rate) incidents, cycling over
    the seven example patterns, plus as many unlabelled near misses; injected events are
    capped at half of the stream. Incident events carry `label = "<pattern>:<n>"` (n
    counts from 1 per pattern); no other event has a `label` field. When `n_keys` is too
    small to keep incidents apart, incidents use extra cards/users with no background.

    Deterministic: the same arguments give the same events (byte-identical JSON),
    whatever the hash seed.
    """
    if n_events < 0:
        raise ValueError("n_events must be >= 0")
    if n_keys is not None and n_keys < 1:
        raise ValueError("n_keys must be >= 1")
    if not 0.0 <= incident_rate <= 0.1:
        raise ValueError("incident_rate must be within [0, 0.1]")
    if n_events == 0:
        return []
    keys = n_keys if n_keys is not None else max(1, n_events // 10)
    s = seed % 2**63
    world = World(keys, np.random.default_rng([s, _STREAM_WORLD]))
    timeline = Timeline(start_ms, span_for(n_events, keys))
    plan = Planner(world, timeline, random.Random(s * 8 + _STREAM_INCIDENTS))  # noqa: S311 (not crypto)
    _inject(plan, n_events, incident_rate)

    rng = np.random.default_rng([s, _STREAM_BACKGROUND])
    blocks = make_background(world, timeline, n_events - len(plan.events), plan, rng)
    injected = plan.events
    blocks.append(
        Block(
            np.array([e["ts"] for e in injected], dtype=np.int64),
            lambda ids: [{"id": i, **e} for i, e in zip(ids, injected, strict=True)],
        )
    )
    with paused_gc():
        return _assemble(blocks)


def _inject(plan: Planner, n_events: int, incident_rate: float) -> None:
    n_incidents = round(n_events * incident_rate)
    budget = n_events // 2  # never let injected events crowd out the background
    kinds = list(INCIDENTS.items())
    misses = list(NEAR_MISSES.values())
    numbers = dict.fromkeys(INCIDENTS, 0)
    for i in range(n_incidents):
        name, inject = kinds[i % len(kinds)]
        before = len(plan.events)
        numbers[name] += 1
        inject(plan, f"{name}:{numbers[name]}")
        if len(plan.events) > budget:
            del plan.events[before:]
            _forget(plan, before)
            break
        _, miss = misses[i % len(misses)]
        before = len(plan.events)
        miss(plan)
        if len(plan.events) > budget:
            del plan.events[before:]
            _forget(plan, before)
            break


def _forget(plan: Planner, n_kept: int) -> None:
    """Drop orders/sessions whose events were cut off by the budget."""
    kept = {id(e) for e in plan.events[:n_kept]}
    plan.orders = [o for o in plan.orders if id(o[0]) in kept]
    plan.sessions = [x for x in plan.sessions if id(x[0]) in kept]


def _assemble(blocks: list[Block]) -> list[Event]:
    ts = np.concatenate([b.ts for b in blocks])
    order = np.argsort(ts, kind="stable")
    rank = np.empty(len(ts), dtype=np.int64)
    rank[order] = np.arange(len(ts), dtype=np.int64)
    ids = _id_strings(rank)
    events: list[Event] = []
    start = 0
    for b in blocks:
        stop = start + len(b.ts)
        events.extend(b.build(ids[start:stop]))
        start = stop
    return [events[i] for i in order.tolist()]


def _id_strings(rank: npt.NDArray[np.int64]) -> list[str]:
    """`e` + the 9-digit (or wider) zero-padded rank, built as a numpy unicode array."""
    width = max(9, len(str(max(0, len(rank) - 1))))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    codes = np.empty((len(rank), width + 1), dtype=np.uint32)
    codes[:, 0] = ord("e")
    codes[:, 1:] = (rank[:, None] // powers) % 10 + ord("0")
    strings: list[str] = codes.view(f"<U{width + 1}").ravel().tolist()
    return strings
