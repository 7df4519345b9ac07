"""From settings and sources to engine parts: the engine config, checked and compiled
patterns. Shared by the embedded loop, the Kafka runner and the API handlers (which
compile here, off the engine's loop, and hand the immutable plan to the loop).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from cep.compiler.pipeline import CompiledPattern, compile_pattern
from cep.dsl import check, parse
from cep.dsl.ast import Pattern, Span
from cep.dsl.diagnostics import diagnostic
from cep.dsl.parser import decode
from cep.errors import ConfigError, Diagnostic, PatternError
from cep.runtime.engine import EngineConfig
from cep.streams import SchemaError, StreamSchema, TimeSpec, schemas_from_table
from service.config import Settings, StreamConfig

Models = Mapping[str, Sequence[str]]
Schemas = Mapping[str, StreamSchema]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""Pattern and model names accepted in URLs (identifiers, as in the pattern language)."""


def time_path(field: str) -> tuple[str, ...]:
    return tuple(field.split("."))


def stream_schemas(settings: Settings, base: Path | None = None) -> dict[str, StreamSchema]:
    """The declared schemas of the configured streams (`fields` or `schema_file`).
    Raises ConfigError for a schema that cannot be read."""
    table = {n: s.model_dump(exclude_none=True) for n, s in settings.streams.items()}
    try:
        return schemas_from_table(table, base)
    except SchemaError as err:
        raise ConfigError(str(err)) from None


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's time and state settings from the service settings.

    The default stream's settings (or the defaults of `StreamConfig`) apply to events
    posted without a stream; each configured stream has its own time field and
    out-of-orderness."""
    default = settings.streams.get(settings.default_stream, StreamConfig())
    idle = [s.idle_timeout_ms for s in settings.streams.values()] or [default.idle_timeout_ms]
    skew = [s.max_future_skew_ms for s in settings.streams.values()] or [
        default.max_future_skew_ms
    ]
    return EngineConfig(
        max_out_of_orderness_ms=default.max_out_of_orderness_ms,
        idle_timeout_ms=min(idle),
        max_future_skew_ms=max(skew),
        default_time_field=time_path(default.time_field),
        stream_time_fields={n: time_path(s.time_field) for n, s in settings.streams.items()},
        stream_out_of_orderness_ms={
            n: s.max_out_of_orderness_ms for n, s in settings.streams.items()
        },
        max_runs_per_key=settings.max_runs_per_key,
        max_resident_keys=settings.max_resident_keys,
        stream_time={n: TimeSpec(s.time_unit, s.assume_utc)
                     for n, s in settings.streams.items()},
        default_time=TimeSpec(default.time_unit, default.assume_utc),
        plausible_times=True,
        stream_schemas=stream_schemas(settings),
        default_schema=stream_schemas(settings).get(settings.default_stream),
        scoring_threads=settings.scoring_threads or None,
    )


def check_source(
    source: str | bytes, models: Models, file: str | None = None,
    schemas: Schemas | None = None,
) -> tuple[tuple[Pattern, ...], list[Diagnostic]]:
    """Parse and check; (patterns, every diagnostic including warnings). Raises
    `PatternError` only for syntax errors and limits (nothing else, whatever the input).
    With `schemas` (the declared streams), fields and types are checked too."""
    text = decode(source, file) if isinstance(source, bytes) else source
    pf = parse(text, file)
    diags = check(pf, models=models, schemas=schemas)
    patterns = tuple(
        _with_source(p, text[p.span.start : p.span.end], file) for p in pf.patterns
    )
    return patterns, diags


def _with_source(p: Pattern, source: str, file: str | None) -> Pattern:
    return dataclasses.replace(p, source=source, file=file)


def load_patterns(
    source: str | bytes, models: Models, file: str | None = None,
    schemas: Schemas | None = None,
) -> tuple[Pattern, ...]:
    """Parse and check; raise one `PatternError` with every error."""
    patterns, diags = check_source(source, models, file, schemas)
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        raise PatternError(errors)
    return patterns


def load_one(
    source: str | bytes, name: str, models: Models, file: str | None = None,
    schemas: Schemas | None = None,
) -> Pattern:
    """The single pattern called `name` in `source` (what `PUT /patterns/{name}` takes);
    another name, or more or fewer than one pattern, is a `PatternError`."""
    patterns = load_patterns(source, models, file, schemas)
    text = source if isinstance(source, str) else decode(source, file)
    if len(patterns) != 1:
        span = patterns[1].span if len(patterns) > 1 else Span(1, 1, 1, 2, 0, 1)
        raise PatternError([diagnostic(
            text, file, span,
            f"expected exactly one pattern (named `{name}`), found {len(patterns)}",
            "E900", "load each pattern with its own PUT /patterns/NAME",
        )])
    p = patterns[0]
    if p.name != name:
        raise PatternError([diagnostic(
            text, file, _name_span(text, p), f"the pattern is named `{p.name}` but was "
            f"uploaded as `{name}`", "E901", f"rename it or PUT it to /patterns/{p.name}",
        )])
    return p


def _name_span(text: str, p: Pattern) -> Span:
    """The span of the pattern's name (after `pattern`), else of the whole pattern."""
    start = text.find(p.name, p.span.start, p.span.end)
    if start < 0:
        return p.span
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return Span(line, column, line, column + len(p.name), start, start + len(p.name))


def compile_all(patterns: Sequence[Pattern], version: int = 1) -> list[CompiledPattern]:
    return [compile_pattern(p, version) for p in patterns]
