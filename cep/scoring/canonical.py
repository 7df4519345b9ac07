"""Byte-stable skops archives, so retraining on the same data gives the same file.

`skops.io.dumps` of the same fitted model differs from process to process, for two
reasons: every object in `schema.json` carries `__id__`, its Python `id()` (a memory
address), and arrays are stored as members named after that id (`140550854913904.npy`);
and each zip member carries the time it was written. `canonical_skops` rewrites the
archive without changing what it loads to: ids renumbered 1, 2, ... in document order,
members renamed 0.npy, 1.npy, ... in archive order (and the schema's `file` references
with them), a fixed timestamp and file mode, and deflate compression.

The result is stable for one set of library versions: `schema.json` records the
skops version, scikit-learn may change what a fitted model holds, and another zlib
may compress differently. `models/train.py` checks that the canonical file loads and
predicts exactly what the fitted model does before writing it.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import PurePosixPath
from typing import Any

from cep.errors import ModelError

SCHEMA = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can carry


def canonical_skops(data: bytes, compresslevel: int = 9) -> bytes:
    """The skops archive `data`, rewritten to depend only on the model it holds."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as src:
            names = src.namelist()
            if SCHEMA not in names:
                raise ModelError("not a skops archive (no schema.json)")
            members = {n: src.read(n) for n in names}
    except zipfile.BadZipFile as exc:
        raise ModelError(f"not a skops archive: {exc}") from None
    renamed = {
        old: f"{i}{PurePosixPath(old).suffix}"
        for i, old in enumerate(n for n in names if n != SCHEMA)
    }
    schema = json.loads(members[SCHEMA])
    _rewrite(schema, renamed)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        _write(dst, SCHEMA, json.dumps(schema, indent=2).encode(), compresslevel)
        for old, new in renamed.items():
            _write(dst, new, members[old], compresslevel)
    return out.getvalue()


def _rewrite(schema: Any, renamed: dict[str, str]) -> None:
    """Renumber `__id__` in document order and follow member renames, in place."""
    ids: dict[int, int] = {}
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__id__"), int):
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            if isinstance(node.get("file"), str) and node["file"] in renamed:
                node["file"] = renamed[node["file"]]
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))


def _write(dst: zipfile.ZipFile, name: str, payload: bytes, compresslevel: int) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.create_system = 3  # unix, whatever the platform
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    dst.writestr(info, payload, compresslevel=compresslevel)
