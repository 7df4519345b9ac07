"""Helpers of the fuzz tests: settings, compiling a generated pattern, and running
the engine (straight, or with a checkpoint/restore in the middle). The bugs these
properties found are pinned as regressions in test_fuzz_regressions.py."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import HealthCheck, settings

from cep.compiler.pipeline import CompiledPattern, compile_pattern
from cep.dsl import ast, load_source
from cep.errors import PatternError
from cep.runtime.engine import Alert, Engine, EngineConfig
from cep.state.store import MemoryStore

# generated patterns use `key` without a key clause now and then (warning W290)
logging.getLogger("cep.dsl").setLevel(logging.ERROR)

# CEP_FUZZ_SCALE=10 runs ten times as many examples, randomly (not derandomized)
SCALE = float(os.environ.get("CEP_FUZZ_SCALE", "1"))


def fuzz(n: int) -> settings:
    """Settings of a fuzz property: `n` examples, reproducible (derandomized) in CI."""
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


def load(text: str) -> ast.Pattern | None:
    """The checked pattern, or None when the checker rejects the text."""
    try:
        return load_source(text)[0]
    except PatternError:
        return None


def compile_text(text: str) -> CompiledPattern:
    return compile_pattern(load_source(text)[0])


# ------------------------------------------------------------------ running


def record(a: Alert) -> bytes:
    """An alert as comparable bytes: everything but the wall-clock `detected_at`.
    (Python's json, not orjson: it takes integers beyond 64 bits, see BUG-10.)"""
    r = {k: v for k, v in a.record.items() if k != "detected_at"}
    return json.dumps([a.topic, r], sort_keys=True, default=repr).encode()


def json_record(a: Alert) -> bytes:
    """The alert record as the sinks write it (orjson)."""
    return orjson.dumps(a.record)


def checkpoint(eng: Engine, store: MemoryStore) -> None:
    store.write_batch(eng.checkpoint())


def new_engine(plan: CompiledPattern, ooo: int = 0) -> Engine:
    return Engine([plan], EngineConfig(max_out_of_orderness_ms=ooo), now_ms=lambda: 0)


def batches(events: list[Any], size: int) -> Iterator[list[Any]]:
    size = max(1, size)
    for i in range(0, len(events), size):
        yield events[i:i + size]


def run(plan: CompiledPattern, events: list[Any], batch: int, ooo: int = 0
        ) -> tuple[Engine, list[Alert]]:
    eng = new_engine(plan, ooo)
    alerts: list[Alert] = []
    for b in batches(events, batch):
        alerts += eng.process(b).alerts
    alerts += eng.finish().alerts
    return eng, alerts


def run_with_restore(plan: CompiledPattern, events: list[Any], batch: int, split: int,
                     ooo: int = 0) -> tuple[Engine, list[Alert]]:
    """Process the batches before batch number `split`, checkpointing after each one
    (deltas into one store), then continue on a fresh engine restored from the store."""
    store = MemoryStore()
    first = new_engine(plan, ooo)
    parts = list(batches(events, batch))
    alerts: list[Alert] = []
    for b in parts[:split]:
        alerts += first.process(b).alerts
        checkpoint(first, store)
    second = new_engine(plan, ooo)
    second.restore(store.items())
    for b in parts[split:]:
        alerts += second.process(b).alerts
    alerts += second.finish().alerts
    assert first.snapshot().counters.get("condition_errors", 0) == 0, first.snapshot().errors
    return second, alerts
