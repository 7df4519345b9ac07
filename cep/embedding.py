"""What an application needs to run patterns in-process (docs/embedding.md).

    import cep

    plans = cep.compile_file("patterns/card_testing.cep")
    engine = cep.Engine(plans)
    sink = cep.ListSink()
    driver = cep.Driver(engine, [sink])
    driver.step(cep.Batch(events))
    driver.finish()
    sink.alerts

These helpers compile patterns (from files, directories or text) and load the models
their `score(...)` calls use; `cep/__init__.py` exports them with the engine, the
driver and the records, loading the compiler only when a compile helper is used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cep.program import CompiledPattern

if TYPE_CHECKING:
    from cep.runtime.engine import ScoreFn
    from cep.scoring.registry import ModelRegistry

PathLike = str | os.PathLike[str]


def load_models(models_dir: PathLike | None) -> ModelRegistry | None:
    """A model registry for the patterns' `score(...)` calls (every model directory
    under `models_dir`), or None without models. Models that do not load are reported
    on stderr and left out."""
    if models_dir is None or not Path(models_dir).is_dir():
        return None
    from cep.scoring.registry import ModelRegistry

    reg = ModelRegistry()
    problems = reg.load_dir(Path(models_dir))
    for name, err in problems or []:
        print(f"warning: model {name!r} not loaded: {err}", file=sys.stderr)
    return reg


def compile_paths(
    paths: Iterable[PathLike], registry: ModelRegistry | None = None
) -> list[CompiledPattern]:
    """Compile `.cep` files and directories (every `*.cep` in them). Raises
    `cep.PatternError` with every diagnostic (file, line, column, snippet)."""
    return _compile(paths, registry.feature_names() if registry is not None else None)


def _compile(
    paths: Iterable[PathLike], models: dict[str, tuple[str, ...]] | None, schemas: Any = None
) -> list[CompiledPattern]:
    from cep.compiler.pipeline import compile_pattern
    from cep.dsl import load_paths

    found = load_paths([str(p) for p in paths], models=models, schemas=schemas)
    return [compile_pattern(p) for p in found]


def compile_scoring(
    paths: Iterable[PathLike], models_dir: PathLike | None, *, schemas: Any = None
) -> tuple[list[CompiledPattern], ScoreFn | None]:
    """Compile patterns against the models' manifests, then load only the models the
    patterns score with: (plans, the engine's `scorer=` or None). Without a pattern
    that scores, neither scikit-learn nor skops is imported (cep/scoring/directory.py).
    A model a pattern needs that does not load raises `cep.errors.ModelError` naming
    the patterns; other models' problems are reported on stderr."""
    features = None
    if models_dir is not None and Path(models_dir).is_dir():
        from cep.scoring.directory import read_manifests

        manifests, problems = read_manifests(Path(models_dir))
        for name, err in problems:
            print(f"warning: model {name!r} not loaded: {err}", file=sys.stderr)
        features = {name: m.feature_names for name, m in sorted(manifests.items())}
    plans = _compile(paths, features, schemas)
    needed = sorted({m for plan in plans for m in plan.models})
    if not needed or models_dir is None:
        return plans, None
    from cep.errors import ModelError
    from cep.scoring.registry import ModelRegistry

    registry = ModelRegistry()
    failed = registry.load_dir(Path(models_dir), only=needed)
    if failed:
        users = {m: sorted(p.name for p in plans if m in p.models) for m, _ in failed}
        raise ModelError("; ".join(
            f"model {m!r} (scored by pattern {', '.join(users[m])}) did not load: {err}"
            for m, err in failed))
    return plans, scorer_for(registry)


def compile_file(*paths: PathLike, models: ModelRegistry | None = None) -> list[CompiledPattern]:
    """`compile_paths(paths, models)`: `cep.compile_file("a.cep", "more/")`."""
    return compile_paths(paths, models)


def compile_source(
    text: str, *, name: str = "<source>", models: ModelRegistry | None = None
) -> list[CompiledPattern]:
    """Compile pattern text (one or more patterns); `name` is the file name its
    diagnostics show."""
    from cep.compiler.pipeline import compile_pattern
    from cep.dsl import load_source

    features = models.feature_names() if models is not None else None
    return [compile_pattern(p) for p in load_source(text, name, models=features)]


def scorer_for(registry: ModelRegistry | None) -> ScoreFn | None:
    """The engine's `scorer=` for a model registry (None without one)."""
    if registry is None:
        return None
    from cep.scoring.adapter import registry_scorer

    scorer: ScoreFn = registry_scorer(registry)
    return scorer
