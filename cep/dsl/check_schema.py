"""Rules that need the streams' declared schemas (cep/streams.py): fields no stream
has (with "did you mean"), and type mismatches in comparisons, arithmetic and string
operators. They run only when `check(..., schemas=...)` is given schemas, and only for
patterns whose every input stream has one (otherwise nothing is known)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping

from cep.dsl.ast import (
    Binary,
    Call,
    Compare,
    Expr,
    ListLit,
    Literal,
    Member,
    Pattern,
    Ref,
    Span,
    Unary,
    resolve_ref,
)
from cep.dsl.check_context import Context, Scope, walk
from cep.dsl.diagnostics import describe
from cep.errors import Diagnostic
from cep.streams import StreamSchema

NUMERIC = frozenset({"number", "integer"})
_NUMBER_FUNCTIONS = frozenset({"count", "len", "abs", "round", "floor", "ceil", "hour",
                               "weekday", "distance_km", "distinct_count", "sum", "avg"})
_ORDERING = frozenset({"<", "<=", ">", ">="})
_STRING_OPS = frozenset({"matches", "starts with", "ends with"})


def applicable(pattern: Pattern, schemas: Mapping[str, StreamSchema]) -> list[StreamSchema]:
    """The schemas of the streams a pattern reads; [] when any of them has none."""
    if not schemas:
        return []
    if pattern.streams is None:
        return list(schemas.values())
    if any(s not in schemas for s in pattern.streams):
        return []
    return [schemas[s] for s in pattern.streams]


def _known(schemas: list[StreamSchema], path: str) -> bool:
    for s in schemas:
        if path in s.fields:
            return True
        parts = path.split(".")
        for i in range(1, len(parts)):  # an object declared without its fields
            prefix = ".".join(parts[:i])
            types = s.fields.get(prefix)
            if types is not None and "object" in types and not any(
                    f.startswith(prefix + ".") for f in s.fields):
                return True
    return False


def _types(schemas: list[StreamSchema], path: str) -> frozenset[str] | None:
    out: set[str] = set()
    for s in schemas:
        t = s.fields.get(path)
        if t is not None:
            out |= t
    out.discard("null")
    return frozenset(out) if out else None


def field_reads(ctx: Context) -> Iterator[tuple[str, Expr, Scope]]:
    """(dotted field path, node, scope) for every event field the pattern's expressions
    read: current-event fields, stage fields, first(s).f / last(s).f."""
    for scope, root in ctx.expressions():
        for node, ancestors in walk(root):
            parent = ancestors[-1] if ancestors else None
            if isinstance(node, Ref):
                if isinstance(parent, Call) and parent.name == "score" and parent.args and \
                        parent.args[0] is node:
                    continue
                if scope.kind == "when" and len(node.path) == 1 and \
                        node.path[0] in scope.measures:
                    continue
                r = resolve_ref(node.path, ctx.stage_names, ctx.let_names)
                if r.kind == "field" or (r.kind == "stage" and r.path and
                                         r.path[0] not in ctx.let_names):
                    yield ".".join(r.path), node, scope  # (`s.risk` of a let is no field)
            elif isinstance(node, Member) and node.path[0] not in ctx.let_names:
                yield ".".join(node.path), node, scope


def pattern_fields(ctx: Context) -> set[str]:
    """Every event field a pattern reads (expressions, key, time, order by)."""
    out = {path for path, _, _ in field_reads(ctx)}
    p = ctx.pattern
    out.update(".".join(k) for k in p.key)
    out.update(".".join(k) for k in p.order_by)
    if p.time_field is not None:
        out.add(".".join(p.time_field))
    return out


def _clause_span(ctx: Context, clause: str) -> Span:
    return dict(ctx.pattern.clause_spans).get(clause, ctx.pattern.span)


def rule_unknown_fields(ctx: Context) -> Iterator[Diagnostic]:
    schemas = applicable(ctx.pattern, ctx.schemas or {})
    if not schemas:
        return
    names = sorted({f for s in schemas for f in s.fields})
    where = ("no stream has" if ctx.pattern.streams is None else
             f"stream{'s' if len(schemas) > 1 else ''} "
             f"{', '.join(s.name for s in schemas)} ha{'ve' if len(schemas) > 1 else 's'} no")
    code = "E301" if ctx.pattern.streams is None else "E300"
    seen: set[tuple[str, int]] = set()
    for path, node, _ in field_reads(ctx):
        if _known(schemas, path) or (path, node.span.start) in seen:
            continue
        seen.add((path, node.span.start))
        close = difflib.get_close_matches(path, names, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else \
            f"the declared fields: {describe(names, limit=20)}"
        yield ctx.error(node.span, f"{where} field `{path}`", code, hint)
    header: list[tuple[str, tuple[str, ...]]] = [("key", k) for k in ctx.pattern.key]
    header += [("order by", k) for k in ctx.pattern.order_by]
    if ctx.pattern.time_field is not None:
        header.append(("time", ctx.pattern.time_field))
    for clause, key in header:
        path = ".".join(key)
        if not _known(schemas, path):
            near = difflib.get_close_matches(path, names, n=1, cutoff=0.6)
            yield ctx.error(_clause_span(ctx, clause),
                            f"`{clause}` names `{path}`: {where} field `{path}`", code,
                            f"did you mean `{near[0]}`?" if near else None)


def _static(ctx: Context, schemas: list[StreamSchema], node: Expr) -> frozenset[str] | None:
    """The JSON types an expression can have (None: unknown)."""
    if isinstance(node, Literal):
        v = node.value
        if v is None:
            return None
        if isinstance(v, bool):
            return frozenset({"boolean"})
        if isinstance(v, int | float):
            return frozenset({"number"})
        return frozenset({"string"})
    if isinstance(node, ListLit):
        return frozenset({"array"})
    if isinstance(node, Ref):
        r = resolve_ref(node.path, ctx.stage_names, ctx.let_names)
        if r.kind == "special":
            return frozenset({"number"}) if r.head == "ts" else None
        if r.kind in ("field", "stage") and r.path:
            return _types(schemas, ".".join(r.path))
        return None
    if isinstance(node, Member):
        return _types(schemas, ".".join(node.path))
    if isinstance(node, Call):
        if node.name in _NUMBER_FUNCTIONS:
            return frozenset({"number"})
        if node.name in ("lower", "upper"):
            return frozenset({"string"})
        if node.name == "exists":
            return frozenset({"boolean"})
        if node.name in ("min", "max") and node.args:
            return _static(ctx, schemas, node.args[0])
        return None
    if isinstance(node, Compare):
        return frozenset({"boolean"})
    return None


def _numeric(types: frozenset[str]) -> bool:
    return bool(types & NUMERIC)


def _show(types: frozenset[str]) -> str:
    return " or ".join(sorted({"number" if t == "integer" else t for t in types}))


def rule_types(ctx: Context) -> Iterator[Diagnostic]:
    schemas = applicable(ctx.pattern, ctx.schemas or {})
    if not schemas:
        return
    for scope, root in ctx.expressions():
        if scope.kind == "when":
            continue  # reads measures, whose types are not declared
        for node, _ in walk(root):
            if isinstance(node, Compare):
                lt, rt = _static(ctx, schemas, node.left), _static(ctx, schemas, node.right)
                if lt is None or rt is None:
                    continue
                if node.op in _ORDERING:
                    ok = (_numeric(lt) and _numeric(rt)) or ("string" in lt and "string" in rt)
                    if not ok:
                        yield ctx.error(
                            node.span, f"`{node.op}` compares {_show(lt)} with {_show(rt)}: "
                            "it is never true", "E310",
                            "compare values of one type; a number in quotes is a string "
                            "(write 500, not \"500\")")
                elif node.op in ("==", "!="):
                    if not (lt & rt or (_numeric(lt) and _numeric(rt))):
                        yield ctx.error(
                            node.span, f"`{node.op}` compares {_show(lt)} with {_show(rt)}: "
                            f"{'never equal' if node.op == '==' else 'always different'}",
                            "E311", "a string is never equal to a number: quote the value "
                            "or compare with a field of the same type")
                elif node.op in _STRING_OPS and "string" not in lt:
                    yield ctx.error(node.left.span, f"`{node.op}` needs a string, this is "
                                    f"{_show(lt)}", "E313", None)
            elif isinstance(node, Binary):
                lt, rt = _static(ctx, schemas, node.left), _static(ctx, schemas, node.right)
                if node.op == "+" and lt is not None and rt is not None and \
                        "string" in lt and "string" in rt:
                    continue
                for side, t in ((node.left, lt), (node.right, rt)):
                    if t is not None and not _numeric(t):
                        yield ctx.error(side.span, f"`{node.op}` needs numbers, this is "
                                        f"{_show(t)}", "E312",
                                        "arithmetic works on numbers (and + joins two strings)")
            elif isinstance(node, Unary) and node.op == "-":
                t = _static(ctx, schemas, node.operand)
                if t is not None and not _numeric(t):
                    yield ctx.error(node.span, f"`-` needs a number, this is {_show(t)}",
                                    "E312", None)


SCHEMA_RULES = (rule_unknown_fields, rule_types)

__all__ = ["SCHEMA_RULES", "applicable", "field_reads", "pattern_fields"]
