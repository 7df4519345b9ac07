"""Load a model file: check it, refuse anything that could run code, build a `Model`.

The steps, in order (each failure is a `ModelError` naming the file and saying what
to do):

1. the file name: `.pkl`, `.pickle` and `.joblib` are pickles and are refused;
2. the bytes' SHA-256 must equal the manifest's `sha256`;
3. the content must be a skops archive: a zip holding `schema.json`. A pickle (by its
   protocol header), a compressed container, or a zip without `schema.json` (such as
   a `torch.save` file, which holds a pickle) is refused;
4. every type `schema.json` names must be in `trusted.ALLOWED_TYPES`; then skops loads
   the file with `trusted=trusted.SKOPS_TRUSTED`, so its own audit must pass too;
5. the fitted state is checked (`structure.check_structure`) and the estimator is
   checked against the manifest (`Model.__init__`).

Never `pickle.loads`, never `joblib.load`, never a wholesale trust of the file.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from pathlib import Path
from typing import Any

import orjson
import skops.io
from skops.io.exceptions import UntrustedTypesFoundException

from cep.errors import ModelError
from cep.scoring.manifest import Manifest
from cep.scoring.model import Model
from cep.scoring.structure import check_structure
from cep.scoring.trusted import ALLOWED_TYPES, SKOPS_TRUSTED

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})

# A model of ours is well under 1 MB; this only stops a zip bomb.
MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_ARCHIVE_MEMBERS = 100_000

_RESAVE = (
    "re-save the model with `skops.io.dump(model, 'model.skops')`, put that file's "
    "name and sha256 in manifest.json, and upload it"
)
_PICKLE_WHY = "unpickling runs arbitrary code from the file, so cep never loads pickles"

# Magic numbers of compressed containers joblib writes pickles into.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"ZF", "joblib zlib"),
    (b"\x5d\x00\x00", "lzma"),
)


def _is_zlib(data: bytes) -> bool:
    """A zlib stream header (RFC 1950): deflate method, check bits valid."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def load_model(path: Path, manifest: Manifest) -> Model:
    """Load the model file at `path`, described by `manifest`."""
    source = str(path)
    _refuse_pickle_name(path.name, source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"cannot read model file {source}: {exc.strerror or exc}; check that the file "
            "named in manifest.json exists next to it"
        ) from None
    return load_model_bytes(data, manifest, source)


def load_model_bytes(data: bytes, manifest: Manifest, source: str) -> Model:
    """Load a model from bytes (e.g. an upload); `source` names it in messages."""
    _refuse_pickle_name(manifest.file, source)
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.sha256:
        raise ModelError(
            f"{source}: sha256 mismatch: manifest.json says {manifest.sha256}, the file's "
            f"is {digest}. The file is not the one the manifest describes (or is "
            "damaged): upload the model file together with its own manifest, or put the "
            "file's sha256 (`sha256sum FILE`) in manifest.json"
        )
    types = skops_types(data, source)
    refused = sorted(types - ALLOWED_TYPES)
    if refused:
        raise _untrusted(source, refused)
    estimator, load_warnings = _skops_load(data, source)
    try:
        check_structure(estimator, len(manifest.features))
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    try:
        return Model(manifest, estimator, load_warnings=load_warnings)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None


def skops_types(data: bytes, source: str = "<model>") -> set[str]:
    """Every `module.class` a skops archive's `schema.json` names, without loading it.

    Refuses (with `ModelError`) anything that is not a skops archive.
    """
    archive = _open_archive(data, source)
    with archive:
        try:
            schema = orjson.loads(archive.read("schema.json"))
        except (zipfile.BadZipFile, orjson.JSONDecodeError, OSError, EOFError) as exc:
            raise _corrupt(source, exc) from None
    if not isinstance(schema, dict) or "protocol" not in schema:
        raise ModelError(f"{source}: schema.json is not a skops schema; {_RESAVE}")
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:  # iterative: a deeply nested file must not exhaust the Python stack
        node = stack.pop()
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                found.add(f"{module}.{cls}")
            elif module is not None or cls is not None:
                raise ModelError(
                    f"{source}: schema.json has a malformed type entry; "
                    f"the file is corrupt or was crafted; {_RESAVE}"
                )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _refuse_pickle_name(name: str, source: str) -> None:
    suffixes = {s.lower() for s in Path(name).suffixes}
    if suffixes & PICKLE_SUFFIXES:
        raise ModelError(
            f"{source}: refusing {name!r}: .pkl/.pickle/.joblib files are pickles and "
            f"{_PICKLE_WHY}; {_RESAVE}"
        )


def _open_archive(data: bytes, source: str) -> zipfile.ZipFile:
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        raise ModelError(
            f"{source}: refusing a pickle file (pickle protocol {data[1]} header); "
            f"{_PICKLE_WHY}; {_RESAVE}"
        )
    kind = next((k for magic, k in _COMPRESSED if data.startswith(magic)), None)
    if kind is None and _is_zlib(data):
        kind = "zlib"
    if kind is not None:
        raise ModelError(
            f"{source}: refusing a {kind}-compressed file: compressed models are "
            f"joblib pickles, and {_PICKLE_WHY}; {_RESAVE}"
        )
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        raise ModelError(
            f"{source}: not a skops archive (the file does not start with a zip header; "
            f"it may be truncated, a protocol 0/1 pickle, or another format); {_RESAVE}"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _corrupt(source, exc) from None
    names = {m.filename for m in members}
    if "schema.json" not in names:
        archive.close()
        pickled = sorted(n for n in names if Path(n).suffix.lower() in PICKLE_SUFFIXES)
        if pickled:
            raise ModelError(
                f"{source}: refusing a zip archive that holds pickles ({', '.join(pickled[:3])}"
                f"; e.g. a torch.save file) and no skops schema; {_PICKLE_WHY}; {_RESAVE}"
            )
        raise ModelError(
            f"{source}: a zip archive but not a skops archive (no schema.json); {_RESAVE}"
        )
    if len(members) > MAX_ARCHIVE_MEMBERS or sum(m.file_size for m in members) > (
        MAX_UNPACKED_BYTES
    ):
        archive.close()
        raise ModelError(
            f"{source}: the archive unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB; "
            "refusing it (models here are well under 1 MB)"
        )
    return archive


def _skops_load(data: bytes, source: str) -> tuple[Any, tuple[str, ...]]:
    # Record warnings (e.g. scikit-learn's InconsistentVersionWarning for a model
    # fitted with another version) instead of letting them escape: the registry
    # reports them. `catch_warnings` is process-wide; loading is rare.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator = skops.io.loads(data, trusted=list(SKOPS_TRUSTED))
        except UntrustedTypesFoundException as exc:
            raise _untrusted(source, [str(exc)]) from None
        except Exception as exc:  # anything a damaged or crafted file makes skops raise
            raise _corrupt(source, exc) from None
    messages = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return estimator, messages


def _untrusted(source: str, names: list[str]) -> ModelError:
    return ModelError(
        f"{source}: refusing the model: it contains types that are not on cep's "
        f"allow-list: {', '.join(names)}. Supported models are "
        "HistGradientBoostingClassifier, IsolationForest and LogisticRegression, "
        "optionally after StandardScaler in a Pipeline, saved with skops.io.dump; "
        "re-fit with one of those, or have the types reviewed and added to "
        "cep/scoring/trusted.py"
    )


def _corrupt(source: str, exc: BaseException) -> ModelError:
    detail = f"{type(exc).__name__}: {exc}".strip()
    if len(detail) > 300:
        detail = detail[:300] + "..."
    return ModelError(
        f"{source}: the model file is corrupt or truncated ({detail}); {_RESAVE} again"
    )
