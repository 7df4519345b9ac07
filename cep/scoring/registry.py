"""The models the service scores with: loaded from a directory, replaced by uploads.

Reads never lock: the registry holds an immutable mapping and every change builds a
new one and swaps the reference, so `snapshot()` taken at a batch boundary sees one
consistent set of models for the whole batch. Changes are serialised by a lock, and a
new model is validated and loaded completely before the swap, so a failed upload
leaves the previous model active.

Each name has a version counter that increases with every successful load or
upload (and keeps counting after a removal), so `(name, version)` never names two
different models in one process.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from types import MappingProxyType

from cep.errors import ModelError
from cep.io.atomic import write_atomic
from cep.scoring.directory import MANIFEST, model_dirs, read_manifest
from cep.scoring.loader import load_model, load_model_bytes
from cep.scoring.manifest import Manifest
from cep.scoring.model import Model


class UnknownModelError(ModelError, KeyError):
    """No model of that name is loaded. Also a `KeyError`, for mapping-style callers."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelRegistry:
    """Thread-safe name -> `Model` registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: Mapping[str, Model] = MappingProxyType({})
        self._versions: dict[str, int] = {}

    # ------------------------------------------------------------------ reads

    def get(self, name: str) -> Model:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownModelError(_unknown(name, self._models)) from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._models))

    def snapshot(self) -> Mapping[str, Model]:
        """An immutable view of the current models; later changes do not affect it."""
        return self._models

    def feature_names(self) -> dict[str, tuple[str, ...]]:
        """Model name -> its feature names in order (what the pattern checker takes)."""
        return {name: model.feature_names for name, model in sorted(self._models.items())}

    def version(self, name: str) -> int:
        """How many times `name` has been loaded or uploaded in this process."""
        if name not in self._models:
            raise UnknownModelError(_unknown(name, self._models))
        return self._versions[name]

    # ---------------------------------------------------------------- changes

    def load_dir(
        self, models_dir: Path, only: Collection[str] | None = None
    ) -> list[tuple[str, ModelError]]:
        """Load every `models_dir/NAME/manifest.json` and the model file it names
        (with `only`, just the models of those names).

        A model that fails to load is skipped and reported as `(NAME, error)`; the
        others are added (replacing models of the same name) in one swap.
        """
        loaded: dict[str, Model] = {}
        errors: list[tuple[str, ModelError]] = []
        for directory in model_dirs(models_dir):
            if only is not None and directory.name not in only:
                continue
            try:
                loaded[directory.name] = _load_directory(directory)
            except ModelError as exc:
                errors.append((directory.name, exc))
        with self._lock:
            self._swap(loaded, ())
        return errors

    def put(
        self,
        name: str,
        model_bytes: bytes,
        manifest_bytes: bytes,
        persist_dir: Path | None = None,
    ) -> Model:
        """Validate and load an uploaded model, then make it the active `name`.

        With `persist_dir`, the files are written to `persist_dir/NAME/` (each one
        atomically) after the model loaded and before it becomes active.
        """
        manifest = Manifest.from_json(manifest_bytes)
        if manifest.name != name:
            raise ModelError(
                f"the manifest names model {manifest.name!r} but it was uploaded as "
                f"{name!r}; make them the same"
            )
        with self._lock:
            model = load_model_bytes(model_bytes, manifest, f"upload of model {name!r}")
            if persist_dir is not None:
                _persist(Path(persist_dir) / name, manifest, model_bytes)
            self._swap({name: model}, ())
        return model

    def remove(self, name: str, persist_dir: Path | None = None) -> None:
        """Unload `name`; with `persist_dir`, also delete `persist_dir/NAME/`."""
        with self._lock:
            if name not in self._models:
                raise UnknownModelError(_unknown(name, self._models))
            if persist_dir is not None:
                _unpersist(Path(persist_dir) / name)
            self._swap({}, (name,))

    def _swap(self, added: Mapping[str, Model], removed: tuple[str, ...]) -> None:
        models = {k: v for k, v in self._models.items() if k not in removed}
        for name, model in added.items():
            models[name] = model
            self._versions[name] = self._versions.get(name, 0) + 1
        self._models = MappingProxyType(models)


def _load_directory(directory: Path) -> Model:
    manifest = read_manifest(directory)
    return load_model(directory / manifest.file, manifest)


def _unknown(name: str, models: Mapping[str, Model]) -> str:
    known = ", ".join(sorted(models)) or "none"
    return f"no model named {name!r} is loaded (loaded: {known}); upload it first"


def _persist(directory: Path, manifest: Manifest, model_bytes: bytes) -> None:
    """Write the model file, then the manifest, each via a temporary file and rename.

    Two files cannot be replaced in one step: if the process dies between the two
    renames, the old manifest meets the new model file, the sha256 check fails on
    the next start, and `load_dir` reports that model instead of loading a wrong one.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        old_file = _current_file(directory)
        write_atomic(directory / manifest.file, model_bytes)
        write_atomic(directory / MANIFEST, manifest.to_bytes())
        if old_file is not None and old_file != manifest.file:
            with contextlib.suppress(FileNotFoundError):
                (directory / old_file).unlink()
    except OSError as exc:
        raise ModelError(
            f"cannot save model {manifest.name!r} to {directory}: {exc.strerror or exc}; "
            "check the directory's permissions and free space (the previous model is "
            "still active)"
        ) from None


def _current_file(directory: Path) -> str | None:
    try:
        return Manifest.from_json((directory / MANIFEST).read_bytes()).file
    except (OSError, ModelError):
        return None


def _unpersist(directory: Path) -> None:
    """Delete the manifest (after which the model no longer loads), then the directory."""
    try:
        (directory / MANIFEST).unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ModelError(
            f"cannot delete {directory / MANIFEST}: {exc.strerror or exc}; the model is "
            "still active"
        ) from None
    shutil.rmtree(directory, ignore_errors=True)
