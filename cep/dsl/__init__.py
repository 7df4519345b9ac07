"""The pattern language front end: source -> checked `Pattern`s.

`load_source` / `load_file` / `load_paths` parse and check, and raise one
`PatternError` holding every error. `parse` and `check` are the two steps alone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path

from cep.dsl.ast import Pattern, PatternFile
from cep.dsl.checker import check
from cep.dsl.diagnostics import diagnostic, in_source_order
from cep.dsl.parser import decode, parse
from cep.errors import Diagnostic, PatternError
from cep.streams import StreamSchema

__all__ = ["check", "load_file", "load_paths", "load_source", "parse"]

log = logging.getLogger("cep.dsl")

Models = Mapping[str, Sequence[str]]
Schemas = Mapping[str, StreamSchema]


def _checked(
    pf: PatternFile, models: Models | None, schemas: Schemas | None = None
) -> tuple[tuple[Pattern, ...], list[Diagnostic]]:
    diags = check(pf, models=models, schemas=schemas)
    for d in diags:
        if d.severity != "error":
            log.warning("%s", d.format())
    errors = [d for d in diags if d.severity == "error"]
    patterns = tuple(
        dataclasses.replace(p, source=pf.source[p.span.start : p.span.end], file=pf.file)
        for p in pf.patterns
    )
    return patterns, errors


def load_source(
    source: str, file: str | None = None, models: Models | None = None,
    schemas: Schemas | None = None,
) -> tuple[Pattern, ...]:
    """Parse and check `source`; the patterns it holds, each with its own text as
    `source`. Raises `PatternError` with every error (warnings are logged)."""
    patterns, errors = _checked(parse(source, file), models, schemas)
    if errors:
        raise PatternError(errors)
    return patterns


def _read(path: Path) -> str:
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PatternError([Diagnostic(
            message=f"cannot read pattern file: {err.strerror or err}", line=1, column=1,
            end_line=1, end_column=1, file=name, code="E110",
            hint="check the path and its permissions",
        )]) from None
    return decode(data, name)


def load_file(
    path: str | os.PathLike[str], models: Models | None = None, schemas: Schemas | None = None
) -> tuple[Pattern, ...]:
    """Parse and check one `.cep` file (UTF-8)."""
    p = Path(path)
    return load_source(_read(p), str(p), models, schemas)


def _expand(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        out.extend(sorted(p.glob("*.cep")) if p.is_dir() else [p])
    return out


def load_paths(
    paths: Iterable[str | os.PathLike[str]], models: Models | None = None,
    schemas: Schemas | None = None, *, skip: Container[str] = (),
) -> tuple[Pattern, ...]:
    """Parse and check files and directories (a directory: every `*.cep` in it, sorted).
    Raises one `PatternError` with the errors of every file, including pattern names
    defined in more than one file. Patterns named in `skip` are parsed (syntax errors
    still count) but neither checked nor returned (the service skips those replaced or
    deleted through its API)."""
    patterns: list[Pattern] = []
    errors: list[Diagnostic] = []
    first_seen: dict[str, str | None] = {}
    for path in _expand(paths):
        try:
            pf = parse(_read(path), str(path))
        except PatternError as err:
            errors.extend(err.diagnostics)
            continue
        if skip:
            pf = dataclasses.replace(
                pf, patterns=tuple(p for p in pf.patterns if p.name not in skip))
        found, errs = _checked(pf, models, schemas)
        errors.extend(errs)
        for p in found:
            if p.name in first_seen and first_seen[p.name] != p.file:
                errors.append(diagnostic(
                    pf.source, p.file, p.span, f"pattern `{p.name}` is also defined in "
                    f"{first_seen[p.name]}", "E200", "pattern names must be unique across files",
                ))
            first_seen.setdefault(p.name, p.file)
        patterns.extend(found)
    if errors:
        raise PatternError(in_source_order(errors))
    return tuple(patterns)

