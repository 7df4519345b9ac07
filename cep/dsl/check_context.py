"""What the checker's rules share: the pattern's stages and lets, the scope of every
expression, and a non-recursive walk over expression trees."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal as TLiteral

from cep.dsl.ast import (
    AGGREGATES,
    Binary,
    BoolOp,
    Call,
    Compare,
    Expr,
    Group,
    ListLit,
    Member,
    Pattern,
    PatternFile,
    Quantifier,
    Span,
    Stage,
    Unary,
    stages_of,
)
from cep.dsl.ast import Sequence as Seq
from cep.dsl.diagnostics import diagnostic
from cep.errors import Diagnostic
from cep.streams import StreamSchema

ScopeKind = TLiteral["let", "where", "until", "measure", "when"]


def multi_event(quantifier: Quantifier | None) -> bool:
    """True when a quantifier lets a stage or group take more than one event."""
    return quantifier is not None and quantifier.max != 1


@dataclass(frozen=True, slots=True)
class StageInfo:
    stage: Stage
    index: int  # position among all stages, in source order
    looping: bool  # may take several events: quantified, or inside a quantified group


@dataclass(frozen=True, slots=True)
class Scope:
    """Where an expression stands. For conditions, `index` is the position of the stage
    that owns it (a group's `until`: its last stage) and `own` the stages it belongs to;
    for a `let`, `index` is the let's position."""

    kind: ScopeKind
    label: str
    index: int = 0
    own: frozenset[str] = frozenset()
    measures: frozenset[str] = frozenset()

    @property
    def is_condition(self) -> bool:
        return self.kind in ("where", "until")

    @property
    def is_emit(self) -> bool:
        return self.kind in ("measure", "when")


def iter_sequences(seq: Seq) -> Iterator[tuple[Seq, Group | None]]:
    """Every sequence (the pattern's and each group's body) with its group."""
    stack: list[tuple[Seq, Group | None]] = [(seq, None)]
    while stack:
        current, group = stack.pop()
        yield current, group
        for step in reversed(current.steps):
            if isinstance(step.element, Group):
                stack.append((step.element.body, step.element))


def iter_groups(seq: Seq) -> Iterator[Group]:
    for _, group in iter_sequences(seq):
        if group is not None:
            yield group


def _stage_infos(seq: Seq) -> list[StageInfo]:
    out: list[StageInfo] = []

    def visit(current: Seq, in_loop: bool) -> None:
        for step in current.steps:
            el = step.element
            if isinstance(el, Group):
                visit(el.body, in_loop or multi_event(el.quantifier))
            else:
                out.append(StageInfo(el, len(out), in_loop or multi_event(el.quantifier)))

    visit(seq, False)  # depth is bounded by the parser's nesting limit
    return out


def children(node: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of a node."""
    if isinstance(node, BoolOp | Binary | Compare):
        return (node.left, node.right)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Call):
        return (*node.args, *(e for _, e in node.kwargs))
    if isinstance(node, Member):
        return (node.obj,)
    if isinstance(node, ListLit):
        return node.items
    return ()


def walk(root: Expr) -> Iterator[tuple[Expr, tuple[Expr, ...]]]:
    """Every node of an expression with its ancestors (outermost first), pre-order."""
    stack: list[tuple[Expr, tuple[Expr, ...]]] = [(root, ())]
    while stack:
        node, ancestors = stack.pop()
        yield node, ancestors
        inner = (*ancestors, node)
        for child in reversed(children(node)):
            stack.append((child, inner))


def enclosing_aggregate(ancestors: tuple[Expr, ...]) -> Call | None:
    """The outermost aggregate call among `ancestors`, if any."""
    for node in ancestors:
        if isinstance(node, Call) and node.name in AGGREGATES:
            return node
    return None


@dataclass
class Context:
    """One pattern being checked."""

    pf: PatternFile
    pattern: Pattern
    models: Mapping[str, Sequence[str]] | None = None
    schemas: Mapping[str, StreamSchema] | None = None  # declared streams (cep/streams.py)
    infos: list[StageInfo] = field(default_factory=list)
    stages: dict[str, StageInfo] = field(default_factory=dict)
    stage_names: frozenset[str] = frozenset()
    let_names: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.infos = _stage_infos(self.pattern.sequence)
        for info in self.infos:
            self.stages.setdefault(info.stage.name, info)
        self.stage_names = frozenset(self.stages)
        self.let_names = frozenset(let.name for let in self.pattern.lets)

    @property
    def source(self) -> str:
        return self.pf.source

    @property
    def file(self) -> str | None:
        return self.pattern.file or self.pf.file

    def error(self, span: Span, message: str, code: str, hint: str | None = None) -> Diagnostic:
        return diagnostic(self.source, self.file, span, message, code, hint)

    def warning(self, span: Span, message: str, code: str, hint: str | None = None) -> Diagnostic:
        return diagnostic(self.source, self.file, span, message, code, hint, "warning")

    def expressions(self) -> Iterator[tuple[Scope, Expr]]:
        """Every root expression of the pattern with its scope."""
        for i, let in enumerate(self.pattern.lets):
            yield Scope("let", f"`let {let.name}`", index=i), let.expr
        for info in self.infos:
            st = info.stage
            own = frozenset({st.name})
            if st.where is not None:
                yield Scope("where", f"the `where` of `{st.name}`", info.index, own), st.where
            if st.until is not None:
                yield Scope("until", f"the `until` of `{st.name}`", info.index, own), st.until
        for group in iter_groups(self.pattern.sequence):
            if group.until is not None:
                names = [s.name for s in stages_of(group.body)]
                last = max((self.stages[n].index for n in names if n in self.stages), default=0)
                yield Scope("until", "the `until` of a group", last, frozenset(names)), group.until
        for emit, what in ((self.pattern.emit, "emit"), (self.pattern.timeout_emit, "on timeout")):
            if emit is None:
                continue
            measures = frozenset(m.name for m in emit.measures)
            for m in emit.measures:
                yield Scope("measure", f"{what} measure `{m.name}`", measures=measures), m.expr
            if emit.when is not None:
                yield Scope("when", f"the `when` of {what}", measures=measures), emit.when
