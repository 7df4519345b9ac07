"""Build the engine from the service settings (used by `python -m service.kafka.runner`
and by tests and benchmarks; `cep serve` builds its own and hands it to `run_kafka`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cep.compiler.pipeline import CompiledPattern
from cep.runtime.engine import Engine
from service.build import engine_config
from service.config import Settings

__all__ = ["compile_dir", "engine_config", "engine_from_settings"]


def compile_dir(patterns: Path | str, registry: Any = None) -> list[CompiledPattern]:
    from cep.embedding import compile_paths

    return compile_paths([str(patterns)], registry)


def engine_from_settings(settings: Settings, plans: list[CompiledPattern] | None = None) -> Engine:
    """An engine with the patterns of `settings.patterns_dir` (or `plans`) and the models
    of `settings.models_dir` when the patterns score."""
    from cep.embedding import load_models, scorer_for

    registry = load_models(settings.models_dir) if settings.models_dir.is_dir() else None
    if plans is None:
        plans = compile_dir(settings.patterns_dir, registry)
    return Engine(plans, engine_config(settings), scorer=scorer_for(registry))
