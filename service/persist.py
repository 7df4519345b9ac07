"""What the API changed, on disk, so a restart comes back with it.

Patterns: `DATA_DIR/patterns/NAME.cep`, one file per name, written atomically
(temporary file, fsync, rename, fsync of the directory). Its first line records the
version and where the pattern came from; the rest is the source as uploaded, so the
file is itself a valid `.cep` file:

    # cep-pattern: version=3 origin=api
    pattern card_testing { ... }

A pattern deleted through the API leaves a tombstone (`# cep-pattern: version=3
deleted`), so a pattern of the patterns directory stays deleted after a restart; a file
pattern whose file was removed is `retired` (it comes back, with the next version, if
the file does). Either way a later load continues the version count: an `alert_id`
hashes (pattern, version, ...), so a version number is never reused for another text.

Models are persisted by `ModelRegistry.put(persist_dir=DATA_DIR/models)`; models of
the models directory deleted through the API are listed in
`DATA_DIR/models-deleted.json`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from cep.errors import ConfigError
from cep.io.atomic import write_atomic

_HEADER = re.compile(r"# cep-pattern: version=(\d+) (origin=(api|file)|deleted|retired)\r?\n")


@dataclass(frozen=True)
class PersistedPattern:
    name: str
    version: int
    origin: str  # "api" | "file" | "deleted" | "retired"
    source: str  # without the header line; "" for a tombstone
    path: Path



class PatternStore:
    """`DATA_DIR/patterns/`: the versions and sources of patterns changed at runtime."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / f"{name}.cep"

    def save(self, name: str, version: int, source: str, origin: str = "api") -> None:
        header = f"# cep-pattern: version={version} origin={origin}\n"
        write_atomic(self.path(name), (header + source).encode())

    def delete(self, name: str, version: int, how: str = "deleted") -> None:
        """A tombstone: `deleted` (through the API) or `retired` (its file is gone)."""
        write_atomic(self.path(name), f"# cep-pattern: version={version} {how}\n".encode())

    def load(self) -> dict[str, PersistedPattern]:
        """Every persisted pattern and tombstone. A file without our header line was not
        written by the service: refused with what to do (never guessed)."""
        out: dict[str, PersistedPattern] = {}
        if not self.root.is_dir():
            return out
        for path in sorted(self.root.glob("*.cep")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"cannot read {path}: {err}; fix or delete the file") from None
            m = _HEADER.match(text)
            if m is None:
                raise ConfigError(
                    f"{path} does not start with '# cep-pattern: version=N origin=api': it "
                    "was not written by the service. Put hand-written patterns in the "
                    "patterns directory, or delete the file"
                )
            origin = m.group(3) or m.group(2)
            source = text[m.end():] if m.group(3) else ""
            out[path.stem] = PersistedPattern(path.stem, int(m.group(1)), origin, source, path)
        return out


class ModelTombstones:
    """Names of models of the models directory that were deleted through the API."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def names(self) -> set[str]:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return set()
        except (OSError, orjson.JSONDecodeError) as err:
            raise ConfigError(f"cannot read {self.path}: {err}; fix or delete it") from None
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise ConfigError(f"{self.path} must hold a JSON list of model names")
        return set(data)

    def add(self, name: str) -> None:
        names = self.names() | {name}
        write_atomic(self.path, orjson.dumps(sorted(names)))

    def discard(self, name: str) -> None:
        names = self.names()
        if name in names:
            names.discard(name)
            write_atomic(self.path, orjson.dumps(sorted(names)))
