"""Every version of every pattern the service has run, so the console can show a
version's text and roll back to it.

`DATA_DIR/pattern-history/NAME/N.cep` holds version N of NAME: a header line
(`# cep-history: version=N origin=api|file loaded_at=ISO`) then the source as loaded.
A version is written once, when it enters the catalog (upload, start-up); it is never
rewritten, since a version number is never reused for another text. Rolling back to
version N loads N's text as a *new* version (see `api_history.py`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cep.io.atomic import write_atomic

_HEADER = re.compile(r"# cep-history: version=(\d+) origin=(\w+) loaded_at=(\S+)\r?\n")


@dataclass(frozen=True)
class HistoricVersion:
    name: str
    version: int
    origin: str
    loaded_at: str
    source: str


class PatternHistory:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str, version: int) -> Path:
        return self.root / name / f"{version}.cep"

    def record(self, name: str, version: int, origin: str, loaded_at: str,
               source: str) -> None:
        path = self._path(name, version)
        if path.exists():
            return
        header = f"# cep-history: version={version} origin={origin} loaded_at={loaded_at}\n"
        write_atomic(path, (header + source).encode())

    def versions(self, name: str) -> list[HistoricVersion]:
        """Oldest first; files that are not ours are skipped."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        out = []
        for path in folder.glob("*.cep"):
            v = self.read(name, path)
            if v is not None:
                out.append(v)
        return sorted(out, key=lambda v: v.version)

    def get(self, name: str, version: int) -> HistoricVersion | None:
        return self.read(name, self._path(name, version))

    @staticmethod
    def read(name: str, path: Path) -> HistoricVersion | None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        m = _HEADER.match(text)
        if m is None:
            return None
        return HistoricVersion(name, int(m.group(1)), m.group(2), m.group(3), text[m.end():])
