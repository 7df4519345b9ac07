"""The engine's scorer in the service: models pinned at batch boundaries, timed.

`ModelRegistry.put` swaps a model in as soon as it is loaded, from the API's thread.
The engine must not see a model change in the middle of a batch, so the scorer reads a
*pinned* snapshot of the registry, which only the engine's loop refreshes (a function
submitted to `Control` after each model change), i.e. between two batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cep.scoring.model import Model
from cep.scoring.registry import ModelRegistry, UnknownModelError


class PinnedScorer:
    def __init__(
        self,
        registry: ModelRegistry,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.registry = registry
        self.observe = observe
        self._models: Mapping[str, Model] = registry.snapshot()

    def refresh(self, _engine: object = None) -> None:
        """Take the registry's current models (call on the engine's loop)."""
        self._models = self.registry.snapshot()

    @property
    def models(self) -> Mapping[str, Model]:
        return self._models

    def __call__(self, model: str, columns: dict[str, list[Any]]) -> Sequence[float]:
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return []
        try:
            m = self._models[model]
        except KeyError:
            raise UnknownModelError(f"no model named {model!r} is loaded") from None
        t0 = time.perf_counter()
        out: list[float] = m.score_batch(columns, n_rows=n).tolist()
        if self.observe is not None:
            self.observe(model, time.perf_counter() - t0)
        return out


def snapshot_scorer(registry: ModelRegistry) -> PinnedScorer:
    """A scorer over the registry as it is now (for dry runs)."""
    return PinnedScorer(registry)
