"""Model registry and batched scoring: skops models behind an explicit type allow-list.

A library: no HTTP, no Kafka. `ModelRegistry` holds the loaded models; a pattern's
`score(model, feature=expr, ...)` calls become one `Model.score_batch` per batch.
"""

from cep.scoring.loader import load_model, load_model_bytes
from cep.scoring.manifest import Feature, Manifest
from cep.scoring.model import Model
from cep.scoring.registry import ModelRegistry, UnknownModelError

__all__ = [
    "Feature",
    "Manifest",
    "Model",
    "ModelRegistry",
    "UnknownModelError",
    "load_model",
    "load_model_bytes",
]
