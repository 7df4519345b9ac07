"""Expression rules: functions, aggregates, names (stages, lets, fields), `score`,
`matches` and `in`. Each rule walks every expression of the pattern with its scope."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import re2

from cep.dsl.ast import (
    AGGREGATES,
    SCALAR_FUNCTIONS,
    Call,
    Compare,
    Expr,
    ListLit,
    Literal,
    Member,
    Ref,
    resolve_ref,
)
from cep.dsl.check_context import Context, Scope, enclosing_aggregate, walk
from cep.dsl.diagnostics import describe
from cep.errors import Diagnostic

FUNCTIONS = AGGREGATES | SCALAR_FUNCTIONS
STAGE_ARG_AGGREGATES = frozenset({"count", "first", "last"})
VALUE_AGGREGATES = AGGREGATES - STAGE_ARG_AGGREGATES

# name -> (min args, max args or None); `score` is checked by rule_score.
ARITY: dict[str, tuple[int, int | None]] = {
    **{name: (1, 1) for name in AGGREGATES},
    "abs": (1, 1), "round": (1, 2), "floor": (1, 1), "ceil": (1, 1), "lower": (1, 1),
    "upper": (1, 1), "len": (1, 1), "exists": (1, 1), "coalesce": (2, None), "if": (3, 3),
    "hour": (1, 1), "weekday": (1, 1), "distance_km": (4, 4),
}
_ARITY_HINTS = {
    "min": "min(s.f) is an aggregate over one stage; for two values use if(a < b, a, b)",
    "max": "max(s.f) is an aggregate over one stage; for two values use if(a > b, a, b)",
}

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _nodes(ctx: Context) -> Iterator[tuple[Scope, Expr, tuple[Expr, ...]]]:
    for scope, root in ctx.expressions():
        for node, ancestors in walk(root):
            yield scope, node, ancestors


def _arity_text(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low} arguments"
    if low == high:
        return f"{low} argument" + ("" if low == 1 else "s")
    return f"{low} to {high} arguments"


# ---------------------------------------------------------------- functions


def rule_functions(ctx: Context) -> Iterator[Diagnostic]:
    for _, node, ancestors in _nodes(ctx):
        if isinstance(node, Member):
            obj = node.obj
            if not (isinstance(obj, Call) and obj.name in ("first", "last")):
                yield ctx.error(node.span, "only first(s) and last(s) have fields", "E245",
                                "read a field of an event: first(s).amount, last(s).amount")
            continue
        if not isinstance(node, Call):
            continue
        if node.name not in FUNCTIONS:
            close = difflib.get_close_matches(node.name, sorted(FUNCTIONS), n=1)
            hint = f"did you mean `{close[0]}`?" if close else (
                f"available functions: {describe(sorted(FUNCTIONS), limit=30)}")
            yield ctx.error(node.span, f"unknown function `{node.name}`", "E240", hint)
            continue
        if node.name == "score":
            continue
        if node.kwargs:
            yield ctx.error(node.span, f"`{node.name}` takes no keyword arguments", "E242",
                            "keyword arguments are only for score(model, feature=expr, …)")
        low, high = ARITY[node.name]
        n = len(node.args)
        if n < low or (high is not None and n > high):
            hint = _ARITY_HINTS.get(node.name, f"write {node.name}(…) with "
                                    f"{_arity_text(low, high)}")
            yield ctx.error(node.span, f"`{node.name}` takes {_arity_text(low, high)}, "
                            f"got {n}", "E241", hint)
        if node.name in ("first", "last"):
            parent = ancestors[-1] if ancestors else None
            if not (isinstance(parent, Member) and parent.obj is node):
                yield ctx.error(node.span, f"{node.name}(…) must be followed by a field",
                                "E245", f"read a field of that event, e.g. {node.name}(s).amount")
        if node.name == "exists" and n == 1 and not isinstance(node.args[0], Ref | Member):
            yield ctx.error(node.args[0].span, "exists(…) takes a field", "E295",
                            "write exists(field) or exists(s.field)")


# ---------------------------------------------------------------- aggregates


def _aggregate_target(ctx: Context, call: Call) -> Iterator[Diagnostic | str]:
    """Diagnostics about an aggregate's argument, then the stage it reads (if known)."""
    arg = call.args[0]
    if call.name in STAGE_ARG_AGGREGATES:
        if isinstance(arg, Ref) and len(arg.path) == 1 and arg.path[0] in ctx.stage_names:
            yield arg.path[0]
        else:
            yield ctx.error(arg.span, f"{call.name}(…) takes a stage name", "E243",
                            f"write {call.name}(s) where s is a stage of this pattern")
        return
    stages: set[str] = set()
    for node, ancestors in walk(arg):
        if isinstance(node, Call) and node.name in AGGREGATES:
            yield ctx.error(node.span, "aggregates cannot be nested", "E246",
                            "aggregate one stage's fields, e.g. sum(s.price * s.qty)")
        elif isinstance(node, Call) and node.name == "score":
            yield ctx.error(node.span, "score(…) cannot be used inside an aggregate", "E278",
                            "compute it with `let` and aggregate the value, e.g. max(s.risk)")
        if not isinstance(node, Ref) or any(
            isinstance(a, Call) and (a.name in AGGREGATES or a.name == "score") for a in ancestors
        ):
            continue  # inside a nested aggregate or a score: reported above
        r = resolve_ref(node.path, ctx.stage_names, ctx.let_names)
        if r.kind == "stage" and r.path:
            stages.add(r.head)
        elif r.kind == "stage":
            yield ctx.error(node.span, f"{call.name}({r.head}) needs a field", "E244",
                            f"write {call.name}({r.head}.field)")
        else:
            yield ctx.error(node.span, f"{call.name}(…) reads `{'.'.join(node.path)}`, which "
                            "is not a stage field", "E244",
                            f"aggregates read one stage's fields: {call.name}(s."
                            f"{'.'.join(node.path)})")
    if len(stages) > 1:
        yield ctx.error(arg.span, f"{call.name}(…) reads several stages: "
                        f"{describe(sorted(stages))}", "E244",
                        "an aggregate reads the fields of one stage")
    elif not stages and not any(isinstance(n, Ref) for n, _ in walk(arg)):
        yield ctx.error(arg.span, f"{call.name}(…) reads no stage", "E244",
                        f"aggregate a stage's field, e.g. {call.name}(s.amount)")
    elif len(stages) == 1:
        yield stages.pop()


def rule_aggregates(ctx: Context) -> Iterator[Diagnostic]:
    for scope, node, ancestors in _nodes(ctx):
        if not (isinstance(node, Call) and node.name in AGGREGATES):
            continue
        if len(node.args) != 1 or enclosing_aggregate(ancestors) is not None:
            continue  # arity errors and nesting are reported elsewhere
        if scope.kind == "let":
            yield ctx.error(node.span, f"{scope.label} cannot use aggregates", "E262",
                            "a let reads only the current event; aggregate in `where` or "
                            "`emit` instead")
            continue
        target: str | None = None
        for item in _aggregate_target(ctx, node):
            if isinstance(item, str):
                target = item
            else:
                yield item
        if target is not None:
            yield from _stage_access(ctx, scope, node, target, aggregated=True)


# ---------------------------------------------------------------- names


def _stage_access(
    ctx: Context, scope: Scope, node: Expr, stage: str, *, aggregated: bool, field: str = ""
) -> Iterator[Diagnostic]:
    """Rules for reading stage `stage` from `scope` (through an aggregate or directly)."""
    info = ctx.stages[stage]
    if info.stage.negated:
        yield ctx.error(node.span, f"`{stage}` is a not stage and holds no event", "E253",
                        "not stages never take events; read a positive stage")
        return
    if scope.kind == "let":
        yield ctx.error(node.span, f"{scope.label} reads stage `{stage}`", "E262",
                        "a let reads only the current event; use stages in `where` or `emit`")
        return
    if scope.is_condition and info.index > scope.index and stage not in scope.own:
        yield ctx.error(node.span, f"{scope.label} reads `{stage}`, a later stage", "E251",
                        "a condition reads the current event and earlier stages only")
        return
    if scope.is_condition and stage in scope.own and not info.looping and aggregated:
        yield ctx.error(
            node.span, f"{scope.label} aggregates its own single-event stage `{stage}`",
            "E252", f"`{stage}` holds no event while its own condition runs; test the "
            "current event's fields directly",
        )
        return
    if scope.is_condition and stage in scope.own and not info.looping:
        yield ctx.error(
            node.span, f"{scope.label} reads its own stage `{stage}` by name", "E252",
            f"use the bare field for the current event: `{field or 'field'}` instead of "
            f"`{stage}.{field or 'field'}`",
        )
        return
    if not aggregated and info.looping:
        f = field or "field"
        yield ctx.error(
            node.span, f"`{stage}` may hold several events; `{stage}.{f}` is ambiguous",
            "E250", f"write last({stage}).{f}, first({stage}).{f} or an aggregate such as "
            f"max({stage}.{f})",
        )


def _skip_ref(node: Ref, ancestors: tuple[Expr, ...]) -> bool:
    """Refs checked elsewhere: inside aggregates, and score's model name."""
    if enclosing_aggregate(ancestors) is not None:
        return True
    parent = ancestors[-1] if ancestors else None
    return isinstance(parent, Call) and parent.name == "score" and bool(parent.args) and \
        parent.args[0] is node


def rule_names(ctx: Context) -> Iterator[Diagnostic]:
    for scope, node, ancestors in _nodes(ctx):
        if not isinstance(node, Ref) or _skip_ref(node, ancestors):
            continue
        path = node.path
        if scope.kind == "when" and len(path) == 1 and path[0] in scope.measures:
            continue  # a measure of this emit
        r = resolve_ref(path, ctx.stage_names, ctx.let_names)
        dotted = ".".join(path)
        if r.kind == "stage":
            if not r.path and not ctx.stages[r.head].stage.negated and scope.kind != "let":
                yield ctx.error(node.span, f"stage `{r.head}` used as a value", "E296",
                                f"read one of its fields, e.g. `{r.head}.amount`")
                continue
            yield from _stage_access(ctx, scope, node, r.head, aggregated=False,
                                     field=".".join(r.path))
        elif r.kind == "let" and scope.kind == "let":
            let_index = next(i for i, let in enumerate(ctx.pattern.lets) if let.name == r.head)
            if let_index >= scope.index:
                yield ctx.error(node.span, f"{scope.label} reads `let {r.head}`, which is not "
                                "defined before it", "E263",
                                "a let may read only the lets written above it")
        elif r.kind in ("let", "field") and scope.is_emit:
            yield ctx.error(
                node.span, f"{scope.label} reads `{dotted}`, which belongs to no stage", "E294",
                f"there is no current event in `emit`; read it from a stage, e.g. "
                f"`s.{dotted}` or last(s).{dotted}",
            )


def rule_key_without_key(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.pattern.key:
        return
    for _, node, ancestors in _nodes(ctx):
        if isinstance(node, Ref) and not _skip_ref(node, ancestors) and \
                resolve_ref(node.path, ctx.stage_names, ctx.let_names).kind == "special" and \
                node.path == ("key",):
            yield ctx.warning(node.span, "`key` is used but the pattern has no `key` clause",
                              "W290", "add `key field` to the header; without it `key` is null")
            return


# ---------------------------------------------------------------- score


def rule_score(ctx: Context) -> Iterator[Diagnostic]:
    for scope, node, _ in _nodes(ctx):
        if not (isinstance(node, Call) and node.name == "score"):
            continue
        if scope.is_condition:
            yield ctx.error(node.span, f"score(…) cannot be used in {scope.label}", "E272",
                            "compute it with `let`, e.g. `let risk = score(model, f=expr)`, "
                            "and test `risk` in the condition")
        yield from _score_arguments(ctx, node)


def _score_arguments(ctx: Context, call: Call) -> Iterator[Diagnostic]:
    model = call.args[0] if call.args else None
    if not (isinstance(model, Ref) and len(model.path) == 1):
        yield ctx.error(model.span if model else call.span, "score(…) needs a model name first",
                        "E270", "write score(model_name, feature=expr, …)")
        model = None
    for extra in call.args[1:]:
        yield ctx.error(extra.span, "score(…) takes features as keyword arguments", "E276",
                        "name each feature: score(model, feature=expr, …)")
    names = [name for name, _ in call.kwargs]
    for i, (name, expr) in enumerate(call.kwargs):
        if name in names[:i]:
            yield ctx.error(expr.span, f"feature `{name}` is given twice", "E277",
                            "give each feature once")
    if ctx.models is None or model is None:
        return
    model_name = model.path[0]
    if model_name not in ctx.models:
        close = difflib.get_close_matches(model_name, sorted(ctx.models), n=1)
        known = describe(sorted(ctx.models)) or "none"
        yield ctx.error(model.span, f"unknown model `{model_name}`", "E273",
                        f"did you mean `{close[0]}`?" if close else f"known models: {known}")
        return
    features = list(ctx.models[model_name])
    for name, expr in call.kwargs:
        if name not in features:
            yield ctx.error(expr.span, f"model `{model_name}` has no feature `{name}`", "E274",
                            f"its features are {describe(features, limit=20)}")
    for name in features:
        if name not in names:
            yield ctx.error(call.span, f"score(…) lacks feature `{name}` of model "
                            f"`{model_name}`", "E275", f"add `{name}=expr`")


# ---------------------------------------------------------------- operators


def rule_matches(ctx: Context) -> Iterator[Diagnostic]:
    for _, node, _ in _nodes(ctx):
        if not (isinstance(node, Compare) and node.op == "matches"):
            continue
        right = node.right
        if not (isinstance(right, Literal) and isinstance(right.value, str)):
            yield ctx.error(right.span, "`matches` needs a string literal regex", "E280",
                            'write s matches "regex"')
            continue
        try:
            re2.compile(right.value, options=_RE2_OPTIONS)
        except (re2.error, UnicodeError, ValueError, TypeError) as err:
            reason = err.args[0] if err.args else err
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            yield ctx.error(right.span, f"invalid regex: {reason}", "E281",
                            "the regex engine is RE2 (linear time): no backreferences or "
                            "lookaround")


def rule_in(ctx: Context) -> Iterator[Diagnostic]:
    for _, node, _ in _nodes(ctx):
        if isinstance(node, Compare) and node.op in ("in", "not in") and \
                not isinstance(node.right, ListLit | Ref | Member):
            yield ctx.error(node.right.span, f"the right side of `{node.op}` must be a list",
                            "E282", 'write x in ["a", "b"] or x in some_list_field')


EXPRESSION_RULES = (
    rule_functions,
    rule_aggregates,
    rule_names,
    rule_key_without_key,
    rule_score,
    rule_matches,
    rule_in,
)

__all__ = ["EXPRESSION_RULES"]
