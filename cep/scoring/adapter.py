"""Connects the engine's `score(...)` calls to a model registry.

The engine hands over, per `score` call site and per batch, the feature names in the
order they were written and one tuple of values per row; this turns them into the
columns of one vectorised `Model.score_batch` call (manifest order is the model's
business). The registry is read once per call, so a model swapped in the middle of a
stream takes effect at a batch boundary, never half-way through a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cep.scoring.registry import ModelRegistry


def registry_scorer(registry: ModelRegistry) -> Any:
    def score(model: str, names: Sequence[str], rows: list[tuple[Any, ...]]) -> Sequence[float]:
        if not rows:
            return []
        m = registry.get(model)
        columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
        return [float(x) for x in m.score_batch(columns)]

    return score
