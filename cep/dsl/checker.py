"""Semantic checks of a parsed `PatternFile`: an ordered list of small rules, each
yielding `Diagnostic`s; `check` runs them all and returns every problem found.

Rules are plain functions of a `Context` (one pattern) so each can be read and
tested alone; the order of `PATTERN_RULES` is the order problems are found in, and the
result is sorted by position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from cep.dsl.ast import PatternFile
from cep.dsl.check_context import Context
from cep.dsl.check_exprs import EXPRESSION_RULES
from cep.dsl.check_schema import SCHEMA_RULES
from cep.dsl.check_size import SIZE_RULES
from cep.dsl.check_structure import STRUCTURE_RULES, file_unique_pattern_names
from cep.dsl.diagnostics import in_source_order
from cep.errors import Diagnostic
from cep.streams import StreamSchema

PatternRule = Callable[[Context], Iterable[Diagnostic]]
FileRule = Callable[[PatternFile], Iterable[Diagnostic]]

FILE_RULES: tuple[FileRule, ...] = (file_unique_pattern_names,)
PATTERN_RULES: tuple[PatternRule, ...] = (
    *STRUCTURE_RULES, *SIZE_RULES, *EXPRESSION_RULES, *SCHEMA_RULES)


def check(
    pf: PatternFile, *, models: Mapping[str, Sequence[str]] | None = None,
    schemas: Mapping[str, StreamSchema] | None = None,
) -> list[Diagnostic]:
    """Every problem of `pf`, in source order. Errors have severity "error"; a few
    doubtful constructs are "warning"s. `models` maps model names to their feature
    names; when given, `score(...)` calls are checked against it. `schemas` are the
    declared streams: when given, fields and types are checked against them."""
    diags: list[Diagnostic] = []
    for file_rule in FILE_RULES:
        diags.extend(file_rule(pf))
    for pattern in pf.patterns:
        ctx = Context(pf, pattern, models, schemas)
        for rule in PATTERN_RULES:
            diags.extend(rule(ctx))
    return in_source_order(diags)
