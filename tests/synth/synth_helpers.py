"""Shared fixtures-by-function for the synth tests (cached: generation is deterministic)."""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from cep.synth import generate

ROOT = Path(__file__).resolve().parents[2]


@cache
def baseline() -> ModuleType:
    """benchmarks/baseline_card_testing.py, imported by path (benchmarks/ is no package)."""
    path = ROOT / "benchmarks" / "baseline_card_testing.py"
    spec = importlib.util.spec_from_file_location("baseline_card_testing", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def events(n: int = 50_000, seed: int = 7, **kw: Any) -> tuple[dict[str, Any], ...]:
    return tuple(generate(n, seed=seed, **kw))


def incidents(evs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, set[str]]:
    """pattern -> its distinct labels."""
    out: dict[str, set[str]] = defaultdict(set)
    for e in evs:
        if "label" in e:
            out[e["label"].partition(":")[0]].add(e["label"])
    return dict(out)
