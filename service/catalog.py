"""The API's view of the loaded patterns: name -> current version, source, plan.

The engine is the truth about what runs (including draining versions); the catalog is
what the API shows and changes. Every change is made under `Catalog.lock` (compile,
persist, swap on the engine loop, then update the catalog), so two uploads of the same
name cannot interleave and versions increase by one per successful change.

At start-up, `startup_entries` merges the patterns directory with what the API
persisted (see `service.persist`):

- a pattern uploaded through the API wins over the file of the same name;
- a pattern deleted through the API stays deleted;
- a file pattern keeps its version while its text is unchanged and gets the next
  version when the file changed (state and alert ids are per version);
- a file pattern whose file is gone is recorded as retired (its version is kept, and
  it comes back with the next version if the file does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cep.compiler.pipeline import CompiledPattern, compile_pattern
from cep.dsl import load_paths
from cep.dsl.ast import Pattern
from service.build import Models, Schemas, load_one
from service.pattern_history import PatternHistory
from service.persist import PatternStore

log = logging.getLogger("cep.service")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PatternEntry:
    name: str
    version: int
    origin: str  # "file" (patterns directory) | "api"
    source: str
    file: str | None
    plan: CompiledPattern
    loaded_at: str

    @property
    def description(self) -> str | None:
        return self.plan.pattern.description

    @property
    def models(self) -> frozenset[str]:
        return self.plan.models


def make_entry(
    pattern: Pattern, version: int, origin: str, source: str, file: str | None
) -> PatternEntry:
    plan = compile_pattern(pattern, version)
    return PatternEntry(pattern.name, version, origin, source, file, plan, now_iso())


class Catalog:
    def __init__(self, store: PatternStore) -> None:
        self.store = store
        self.history = PatternHistory(store.root.parent / "pattern-history")
        self.lock = threading.RLock()
        self._entries: dict[str, PatternEntry] = {}
        self._last_version: dict[str, int] = {}

    def get(self, name: str) -> PatternEntry | None:
        return self._entries.get(name)

    def entries(self) -> list[PatternEntry]:
        return sorted(list(self._entries.values()), key=lambda e: e.name)  # copy: atomic

    def next_version(self, name: str) -> int:
        return self._last_version.get(name, 0) + 1

    def put(self, entry: PatternEntry) -> None:
        self._entries[entry.name] = entry
        try:
            self.history.record(entry.name, entry.version, entry.origin, entry.loaded_at,
                                entry.source)
        except OSError as err:  # the history is for the console; the change stands
            log.warning("cannot record version %d of %s: %s", entry.version, entry.name, err)
        self._last_version[entry.name] = max(self._last_version.get(entry.name, 0), entry.version)

    def remove(self, name: str) -> PatternEntry | None:
        return self._entries.pop(name, None)

    def note_version(self, name: str, version: int) -> None:
        self._last_version[name] = max(self._last_version.get(name, 0), version)

    def users_of(self, model: str) -> list[str]:
        return sorted(e.name for e in list(self._entries.values()) if model in e.models)

    def load_startup(
        self, patterns_dir: Path, models: Models, schemas: Schemas | None = None
    ) -> list[PatternEntry]:
        """Fill the catalog from the patterns directory and the persisted changes."""
        entries = startup_entries(patterns_dir, self.store, models, self, schemas)
        for e in entries:
            self.put(e)
        return entries


def startup_entries(
    patterns_dir: Path, store: PatternStore, models: Models, catalog: Catalog,
    schemas: Schemas | None = None,
) -> list[PatternEntry]:
    """The patterns of the directory (checked against the declared stream schemas) and
    the persisted API changes (accepted before; not re-checked against schemas)."""
    persisted = store.load()
    for r in persisted.values():
        catalog.note_version(r.name, r.version)
    base: Mapping[str, Pattern] = {}
    # patterns replaced or deleted through the API are not checked again from their
    # file: a deleted pattern may use a model deleted since (issue 14)
    overridden = {n for n, r in persisted.items() if r.origin in ("api", "deleted")}
    if patterns_dir.is_dir():
        base = {p.name: p for p in load_paths([patterns_dir], models=models, schemas=schemas,
                                              skip=overridden)}
    out: list[PatternEntry] = []
    for name, p in base.items():
        found = persisted.get(name)
        if found is not None and found.origin in ("api", "deleted"):
            continue  # replaced or deleted through the API
        if found is not None and found.origin == "file" and found.source == p.source:
            version = found.version
        else:
            version = found.version + 1 if found is not None else 1
            store.save(name, version, p.source, origin="file")
            catalog.note_version(name, version)
            if found is not None:
                log.info("pattern %s changed in %s: now version %d", name, p.file, version)
        out.append(make_entry(p, version, "file", p.source, p.file))
    for name, r in persisted.items():
        if r.origin == "file" and name not in base:
            log.info("pattern %s (version %d) is no longer in %s: unloaded", name,
                     r.version, patterns_dir)
            store.delete(name, r.version, how="retired")
        elif r.origin == "api":
            full = r.path.read_text(encoding="utf-8")
            p = load_one(full, name, models, file=str(r.path))
            out.append(make_entry(p, r.version, "api", r.source, None))
    return out
