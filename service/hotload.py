"""Applying a pattern or model change on this instance: the one code path behind both a
change made through this instance's API (embedded mode, or Kafka mode without the
control topic) and a change read from the control topic (service/kafka/control_follower.py).

Order of a change, under `Catalog.lock`: check and compile -> persist (the previous
file is kept in memory and restored if the swap fails) -> swap on the engine's loop at
a batch boundary (`run`) -> update the catalog. `Engine.add` keeps the replaced version
running as *draining* in every task: its partial matches finish under the version that
started them, it starts none, and it is retired when it has no state left.

`run(fn)` runs `fn(engine)` on the engine's loop and returns its result; `None` means
there is no engine yet (start-up: the engine is built from the catalog afterwards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cep.compiler.pipeline import CompiledPattern
from cep.errors import Diagnostic, ModelError, PatternError
from cep.io.atomic import write_atomic
from cep.runtime.engine import Engine
from cep.scoring.loader import load_model_bytes
from cep.scoring.manifest import Manifest
from cep.scoring.model import Model
from service.api.compile_guard import check_compile_cost
from service.build import load_one, load_patterns
from service.catalog import make_entry, now_iso

if TYPE_CHECKING:
    from service.service_state import ServiceState

T = TypeVar("T")
Run = Callable[[Callable[[Engine], Any]], Any] | None


class ModelConflictError(Exception):
    """A model change that loaded patterns do not allow (HTTP 409)."""

    def __init__(self, detail: str, diagnostics: list[Diagnostic] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.diagnostics = diagnostics or []


@dataclass(frozen=True)
class PatternPut:
    name: str
    version: int
    previous_version: int | None
    draining: list[int]
    applied_at: str
    created: bool


@dataclass(frozen=True)
class PatternRemoved:
    name: str
    version: int
    dropped_partial_matches: int
    applied_at: str


def _swap(plan: CompiledPattern) -> Callable[[Engine], list[int]]:
    def fn(engine: Engine) -> list[int]:
        engine.add(plan)
        return [p.version for p in engine.patterns() if p.name == plan.name and p.draining]

    return fn


def bounded_compile(svc: ServiceState, body: bytes) -> None:
    """Posted text is compiled by a bounded child process first
    (service/api/compile_guard.py)."""
    api = svc.settings.api
    check_compile_cost(body, svc.registry.feature_names(), timeout_s=api.compile_timeout_s,
                       memory_mb=api.compile_memory_mb)


def check_pattern(svc: ServiceState, name: str, body: bytes) -> None:
    """Refuse text that does not compile (`PatternError` with every diagnostic) or that
    the bounded compile refuses; nothing is changed."""
    bounded_compile(svc, body)
    load_one(body, name, svc.registry.feature_names(), schemas=svc.schemas)


def apply_pattern_put(svc: ServiceState, name: str, body: bytes, version: int | None,
                      run: Run) -> PatternPut:
    """Load `body` as version `version` of `name` (None: the next version)."""
    catalog, store = svc.catalog, svc.patterns_store
    with catalog.lock:
        pattern = load_one(body, name, svc.registry.feature_names(), schemas=svc.schemas)
        text = body.decode("utf-8")  # load_one checked it is UTF-8
        v = catalog.next_version(name) if version is None else version
        entry = make_entry(pattern, v, "api", text, None)
        prev = catalog.get(name)
        path = store.path(name)
        old_file = path.read_bytes() if path.exists() else None
        store.save(name, v, text)
        draining: list[int] = []
        try:
            if run is not None:
                draining = run(_swap(entry.plan))
        except BaseException:
            if old_file is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, old_file)
            raise
        catalog.put(entry)
    svc.metrics.swaps.labels("pattern_put").inc()
    return PatternPut(name, v, prev.version if prev else None, draining, now_iso(),
                      prev is None)


def apply_pattern_delete(svc: ServiceState, name: str, run: Run) -> PatternRemoved | None:
    """Unload `name` (every version, at the next batch boundary); None if not loaded."""
    catalog, store = svc.catalog, svc.patterns_store
    with catalog.lock:
        entry = catalog.get(name)
        if entry is None:
            return None
        path = store.path(name)
        old_file = path.read_bytes() if path.exists() else None
        store.delete(name, entry.version)

        def remove(engine: Engine) -> int:
            dropped = sum(p.live_runs for p in engine.snapshot().versions(name))
            engine.remove(name)
            return dropped

        dropped = 0
        try:
            if run is not None:
                dropped = run(remove)
        except BaseException:
            if old_file is not None:
                write_atomic(path, old_file)
            raise
        catalog.remove(name)
    svc.metrics.swaps.labels("pattern_delete").inc()
    return PatternRemoved(name, entry.version, dropped, now_iso())


def check_model(svc: ServiceState, name: str, data: bytes, manifest: bytes) -> Model:
    """The safe loader's checks (manifest, sha256, a skops archive of allow-listed types;
    never unpickled) and the loaded patterns' `score(...)` calls; nothing is changed."""
    parsed = Manifest.from_json(manifest)
    if parsed.name != name:
        raise ModelError(f"the manifest names model {parsed.name!r} but it was uploaded as "
                         f"{name!r}; make them the same")
    model = load_model_bytes(data, parsed, f"upload of model {name!r}")
    users = [e for e in svc.catalog.entries() if name in e.models]
    if users:
        features = dict(svc.registry.feature_names())
        features[name] = parsed.feature_names
        problems: list[Diagnostic] = []
        for e in users:
            try:
                load_patterns(e.source, features, file=e.name)
            except PatternError as err:
                problems.extend(err.diagnostics)
        if problems:
            raise ModelConflictError(
                f"model {name!r} with features {', '.join(parsed.feature_names)} does not "
                "fit the score(...) calls of loaded patterns; update the patterns first "
                "(or upload a model with the same features)", problems)
    return model


def apply_model_put(svc: ServiceState, name: str, data: bytes, manifest: bytes,
                    run: Run) -> Model:
    """Validate and load the model (`ModelRegistry.put`: the safe loader), persist it,
    and hand it to the engine's scorer at the next batch boundary."""
    with svc.catalog.lock:
        check_model(svc, name, data, manifest)
        model = svc.registry.put(name, data, manifest, persist_dir=svc.uploaded_models_dir)
        svc.model_tombstones.discard(name)
        svc.model_problems.pop(name, None)
        _refresh_scorer(svc, run)
    svc.metrics.swaps.labels("model_put").inc()
    return model


def _refresh_scorer(svc: ServiceState, run: Run) -> None:
    """The engine's scorer takes the registry's models (on its loop when there is one)."""
    if run is not None:
        run(svc.scorer.refresh)
    else:
        svc.scorer.refresh()


def refuse_if_used(name: str, using: list[str]) -> None:
    if using:
        raise ModelConflictError(
            f"model {name!r} is used by {', '.join(using)}; delete or change those "
            "patterns first (draining versions finish soon)")


def model_users(name: str) -> Callable[[Engine], list[str]]:
    def users(engine: Engine) -> list[str]:
        return sorted({f"{p.name}@{p.version}" for p in engine.patterns() if name in p.models})

    return users


def apply_model_delete(svc: ServiceState, name: str, run: Run) -> bool:
    """Unload `name`; False if it is not loaded. `ModelConflictError` while a loaded
    pattern (draining versions too) scores with it."""
    with svc.catalog.lock:
        if name not in svc.registry.names():
            return False
        if run is not None:
            using = run(model_users(name))
        else:
            using = svc.catalog.users_of(name)
        refuse_if_used(name, using)
        if (svc.settings.models_dir / name / "manifest.json").exists():
            svc.model_tombstones.add(name)
        svc.registry.remove(name, persist_dir=svc.uploaded_models_dir)
        _refresh_scorer(svc, run)
    svc.metrics.swaps.labels("model_delete").inc()
    return True
