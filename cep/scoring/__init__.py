"""Model registry and batched scoring: skops models behind an explicit type allow-list.

A library: no HTTP, no Kafka. `ModelRegistry` holds the loaded models; a pattern's
`score(model, feature=expr, ...)` calls become one `Model.score_batch` per batch.

The names below are imported on first use: importing `cep.scoring` (or a light
submodule such as `cep.scoring.manifest` or `cep.scoring.threads`) does not import
scikit-learn or skops (~2 s), which only a pattern that scores needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cep.scoring.loader import load_model, load_model_bytes
    from cep.scoring.manifest import Feature, Manifest
    from cep.scoring.model import Model
    from cep.scoring.registry import ModelRegistry, UnknownModelError

_WHERE = {
    "Feature": "cep.scoring.manifest",
    "Manifest": "cep.scoring.manifest",
    "Model": "cep.scoring.model",
    "ModelRegistry": "cep.scoring.registry",
    "UnknownModelError": "cep.scoring.registry",
    "load_model": "cep.scoring.loader",
    "load_model_bytes": "cep.scoring.loader",
}

__all__ = [
    "Feature",
    "Manifest",
    "Model",
    "ModelRegistry",
    "UnknownModelError",
    "load_model",
    "load_model_bytes",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'cep.scoring' has no attribute {name!r}")
    return getattr(importlib.import_module(where), name)
