"""Read-only figures of a running engine (`Engine.snapshot()`), for metrics and APIs.

A snapshot is a copy: taking it on the engine's thread and reading it on another is
safe, and nothing in it reaches back into the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LoadedPattern:
    """One loaded pattern version, as `Engine.patterns()` lists it."""

    name: str
    version: int
    draining: bool  # replaced: finishes its partial matches, starts none
    models: frozenset[str]  # the models its `score(...)` calls use
    topics: frozenset[str]  # the topics its `emit to` clauses name


@dataclass
class PatternStats:
    name: str
    version: int
    draining: bool
    keys: int
    live_runs: int
    pending_timers: int
    buffered: int
    stats: dict[str, int]


@dataclass
class ClockStats:
    name: str
    watermark: float
    ooo_ms: int
    partitions: dict[str, int]


@dataclass
class EngineSnapshot:
    taken_ms: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    patterns: list[PatternStats] = field(default_factory=list)
    clocks: list[ClockStats] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the first condition/scoring errors

    def versions(self, name: str) -> list[PatternStats]:
        return [p for p in self.patterns if p.name == name]


def partition_label(partition: Any) -> str:
    if isinstance(partition, tuple):
        return "/".join(str(p) for p in partition)
    return str(partition)
