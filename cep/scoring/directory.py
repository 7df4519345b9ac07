"""A models directory read without loading any model: `models/NAME/manifest.json`.

The pattern checker needs only each model's feature names, which the manifests hold;
reading them imports neither scikit-learn nor skops. The command line reads the
manifests, compiles the patterns, and then loads only the models the patterns score
with (`ModelRegistry.load_dir(..., only=...)`), so a run whose patterns do not score
never imports scikit-learn.
"""

from __future__ import annotations

from pathlib import Path

from cep.errors import ModelError
from cep.scoring.manifest import Manifest

MANIFEST = "manifest.json"


def model_dirs(models_dir: Path) -> list[Path]:
    """The model directories (`NAME/` holding a manifest.json; hidden ones skipped)."""
    return [
        p.parent for p in sorted(Path(models_dir).glob(f"*/{MANIFEST}"))
        if not p.parent.name.startswith(".")
    ]


def read_manifest(directory: Path) -> Manifest:
    """`directory/manifest.json`, checked, and naming the directory's model."""
    manifest_path = directory / MANIFEST
    try:
        raw = manifest_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {manifest_path}: {exc.strerror or exc}") from None
    try:
        manifest = Manifest.from_json(raw)
    except ModelError as exc:
        raise ModelError(f"{manifest_path}: {exc}") from None
    if manifest.name != directory.name:
        raise ModelError(
            f"{manifest_path} names model {manifest.name!r} but its directory is "
            f"{directory.name!r}; rename one of them"
        )
    return manifest


def read_manifests(models_dir: Path) -> tuple[dict[str, Manifest], list[tuple[str, ModelError]]]:
    """Every model's manifest in `models_dir`, and (NAME, error) for those that fail."""
    manifests: dict[str, Manifest] = {}
    errors: list[tuple[str, ModelError]] = []
    for directory in model_dirs(models_dir):
        try:
            manifests[directory.name] = read_manifest(directory)
        except ModelError as exc:
            errors.append((directory.name, exc))
    return manifests, errors
