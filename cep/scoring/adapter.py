"""Connects the engine's `score(...)` calls to a model registry.

The engine hands over, per `score` call site and per batch, one column of values per
feature (built by a generated list comprehension per feature); this makes it one
vectorised `Model.score_batch` call (manifest order is the model's business). The
registry is read once per call, so a model swapped in the middle of a stream takes
effect at a batch boundary, never half-way through a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cep.scoring.registry import ModelRegistry


def registry_scorer(registry: ModelRegistry) -> Any:
    def score(model: str, columns: dict[str, list[Any]]) -> Sequence[float]:
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return []
        m = registry.get(model)
        scores: list[float] = m.score_batch(columns, n_rows=n).tolist()
        return scores

    return score
