"""The pattern language's abstract syntax tree: frozen nodes, each with its source span.

The parser (`cep.dsl.parser`) turns Lark's tree into these nodes at once; no Lark
object leaves `cep.dsl`. The checker validates them; the compiler reads only
validated trees.

Names in expressions are kept as written (`Ref(path=("big", "amount"))`): whether the
first part names a stage, a `let` value, or a field of the current event is decided by
`resolve_ref`, which the checker and the compiler share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal as TLiteral

Value = int | float | str | bool | None


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node stands in its source: 1-based lines and columns, 0-based offsets."""

    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0
    start: int = 0
    end: int = 0


NO_SPAN = Span()

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Literal:
    """A number, string, boolean or null. Durations are parsed to int milliseconds."""

    value: Value
    span: Span = field(default=NO_SPAN, compare=False)
    is_duration: bool = False


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Expr, ...]
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Ref:
    """A dotted name: `amount`, `geo.country`, `big.amount`, `risk`, `key`, `ts`."""

    path: tuple[str, ...]
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Member:
    """Field access on a call result: `first(tiny).amount` is Member(Call(first), ("amount",))."""

    obj: Expr
    path: tuple[str, ...]
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    """A call of a built-in function, an aggregate, or `score(model, feature=expr, ...)`."""

    name: str
    args: tuple[Expr, ...] = ()
    kwargs: tuple[tuple[str, Expr], ...] = ()
    span: Span = field(default=NO_SPAN, compare=False)


UnaryOpName = TLiteral["not", "-"]


@dataclass(frozen=True, slots=True)
class Unary:
    op: UnaryOpName
    operand: Expr
    span: Span = field(default=NO_SPAN, compare=False)


BinaryOpName = TLiteral["+", "-", "*", "/", "%"]


@dataclass(frozen=True, slots=True)
class Binary:
    op: BinaryOpName
    left: Expr
    right: Expr
    span: Span = field(default=NO_SPAN, compare=False)


CompareOpName = TLiteral[
    "==", "!=", "<", "<=", ">", ">=", "in", "not in",
    "matches", "contains", "starts with", "ends with",
]


@dataclass(frozen=True, slots=True)
class Compare:
    op: CompareOpName
    left: Expr
    right: Expr
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: TLiteral["and", "or"]
    left: Expr
    right: Expr
    span: Span = field(default=NO_SPAN, compare=False)


Expr = Literal | ListLit | Ref | Member | Call | Unary | Binary | Compare | BoolOp

# ---------------------------------------------------------------- sequence


@dataclass(frozen=True, slots=True)
class Quantifier:
    """`{min,max}`; max None means unbounded. `+` is (1, None); `*` is (1, None) + optional;
    `{0,m}` is (1, m) + optional (the optional flag lives on the stage or group)."""

    min: int
    max: int | None
    span: Span = field(default=NO_SPAN, compare=False)


Connector = TLiteral["next", "then", "then any"]


@dataclass(frozen=True, slots=True)
class Stage:
    """`[not] NAME [quantifier] [modifiers] [where EXPR] [until EXPR] [within DURATION]`."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False)
    negated: bool = False
    quantifier: Quantifier | None = None  # None: exactly one event
    optional: bool = False
    greedy: bool = False
    consecutive: bool = False
    combinations: bool = False
    where: Expr | None = None
    until: Expr | None = None
    within_ms: int | None = None
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Group:
    """`( sequence ) [quantifier] [modifiers] [until EXPR] [within DURATION]`."""

    body: Sequence
    span: Span = field(default=NO_SPAN, compare=False)
    quantifier: Quantifier | None = None
    optional: bool = False
    greedy: bool = False
    consecutive: bool = False
    combinations: bool = False
    until: Expr | None = None
    within_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One element of a sequence with the connector that joins it to the previous one
    (None for the first element)."""

    connector: Connector | None
    element: Stage | Group
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Sequence:
    steps: tuple[Step, ...]
    span: Span = field(default=NO_SPAN, compare=False)


# ---------------------------------------------------------------- pattern

SkipKind = TLiteral["past_last", "to_next", "to_first", "to_last", "none"]
Severity = TLiteral["low", "medium", "high", "critical"]


@dataclass(frozen=True, slots=True)
class Skip:
    kind: SkipKind = "past_last"
    stage: str | None = None
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    expr: Expr
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Emit:
    topic: str | None = None
    severity: Severity | None = None
    when: Expr | None = None
    measures: tuple[Measure, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    expr: Expr
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Pattern:
    name: str
    sequence: Sequence
    span: Span = field(default=NO_SPAN, compare=False)
    description: str | None = None
    streams: tuple[str, ...] | None = None  # None: all streams
    key: tuple[tuple[str, ...], ...] = ()  # field paths; () = one global matcher
    time_field: tuple[str, ...] | None = None  # None: the stream's time field, else ("ts",)
    time_arrival: bool = False
    order_by: tuple[tuple[str, ...], ...] = ()
    within_ms: int | None = None
    skip: Skip = field(default_factory=Skip)
    lets: tuple[Let, ...] = ()
    emit: Emit | None = None  # None: an alert with no measures
    timeout_emit: Emit | None = None  # None: timeouts produce nothing
    source: str = field(default="", compare=False)  # the pattern's own text
    file: str | None = field(default=None, compare=False)
    # header clauses as written, for diagnostics: clause keyword -> span
    clause_spans: tuple[tuple[str, Span], ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class PatternFile:
    patterns: tuple[Pattern, ...]
    source: str = field(default="", compare=False)
    file: str | None = None


# ---------------------------------------------------------------- name resolution

SPECIAL_NAMES = frozenset({"key", "ts"})

AGGREGATES = frozenset({"count", "sum", "avg", "min", "max", "distinct_count", "first", "last"})
SCALAR_FUNCTIONS = frozenset({
    "abs", "round", "floor", "ceil", "lower", "upper", "len", "exists", "coalesce", "if",
    "hour", "weekday", "distance_km", "score",
})


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a `Ref` names. kind: 'special' (key/ts), 'let' (a let value of the current
    event), 'field' (a field of the current event), 'stage' (a stage's event or field)."""

    kind: TLiteral["special", "let", "field", "stage"]
    head: str  # the special name, let name, or stage name; '' for fields
    path: tuple[str, ...]  # the rest: field path inside the event / stage event


def resolve_ref(
    path: tuple[str, ...], stage_names: frozenset[str], let_names: frozenset[str]
) -> Resolved:
    """Decide what a dotted name means. Stage names win over fields and lets; then
    `key`/`ts` when alone; then lets; else a field path of the current event."""
    head = path[0]
    if head in stage_names:
        return Resolved("stage", head, path[1:])
    if len(path) == 1 and head in SPECIAL_NAMES:
        return Resolved("special", head, ())
    if head in let_names:
        return Resolved("let", head, path[1:])
    return Resolved("field", "", path)


def stages_of(seq: Sequence) -> list[Stage]:
    """Every stage of a sequence, groups flattened, in source order."""
    out: list[Stage] = []
    for step in seq.steps:
        el = step.element
        if isinstance(el, Group):
            out.extend(stages_of(el.body))
        else:
            out.append(el)
    return out
