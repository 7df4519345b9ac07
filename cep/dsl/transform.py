"""Lark's parse tree -> our frozen AST (`cep.dsl.ast`), at once and by hand.

Only `cep.dsl` touches Lark objects. Problems the grammar cannot express (a duplicate
header clause, a literal out of range, a limit exceeded) are collected as diagnostics;
the nesting limit is checked on the Lark tree *before* the recursive build, so no
RecursionError can happen here or in later tree walks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from lark import Token, Tree

from cep.dsl.ast import (
    Connector,
    Emit,
    Expr,
    Group,
    Let,
    Measure,
    Pattern,
    Quantifier,
    Sequence,
    Severity,
    Skip,
    SkipKind,
    Span,
    Stage,
    Step,
    stages_of,
)
from cep.dsl.build_exprs import (
    ExprBuilder,
    LarkTree,
    first_too_deep,
    join,
    span_of,
    tokens,
    trees,
)
from cep.dsl.limits import MAX_NESTING, MAX_PATTERNS, MAX_QUANTIFIER, MAX_STAGES

_HEADER_KEYWORDS = {
    "description_clause": "description",
    "from_clause": "from",
    "key_clause": "key",
    "time_clause": "time",
    "order_clause": "order by",
    "within_clause": "within",
    "skip_past_last": "skip",
    "skip_to_next": "skip",
    "skip_to_first": "skip",
    "skip_to_last": "skip",
    "skip_none": "skip",
    "let_clause": "let",
}
_SKIP_KINDS: dict[str, SkipKind] = {
    "skip_past_last": "past_last",
    "skip_to_next": "to_next",
    "skip_to_first": "to_first",
    "skip_to_last": "to_last",
    "skip_none": "none",
}
_CONNECTORS: dict[str, Connector] = {"c_next": "next", "c_then": "then", "c_then_any": "then any"}


@dataclass
class _Header:
    """The header clauses and emits of a pattern being built (Pattern's fields)."""

    description: str | None = None
    streams: tuple[str, ...] | None = None
    key: tuple[tuple[str, ...], ...] = ()
    time_field: tuple[str, ...] | None = None
    time_arrival: bool = False
    order_by: tuple[tuple[str, ...], ...] = ()
    within_ms: int | None = None
    skip: Skip = field(default_factory=Skip)
    emit: Emit | None = None
    timeout_emit: Emit | None = None


@dataclass
class _Parts:
    """What follows the name of a stage or the body of a group."""

    quantifier: Quantifier | None = None
    optional: bool = False
    greedy: bool = False
    consecutive: bool = False
    combinations: bool = False
    where: Expr | None = None
    until: Expr | None = None
    within_ms: int | None = None


class Builder(ExprBuilder):
    """Builds the AST of one parse tree, collecting diagnostics in `diags`."""

    # ------------------------------------------------------------------ file and pattern

    def build_file(self, root: LarkTree) -> tuple[Pattern, ...]:
        patterns: list[Pattern] = []
        for i, node in enumerate(trees(root)):
            if i == MAX_PATTERNS:
                self.error(
                    tokens(node)[0], f"too many patterns in one file (limit {MAX_PATTERNS})",
                    "E153", "split the patterns over several files",
                )
                break
            built = self.pattern(node)
            if built is not None:
                patterns.append(built)
        return tuple(patterns)

    def pattern(self, node: LarkTree) -> Pattern | None:
        deep = first_too_deep(node)
        if deep is not None:
            if deep.data == "group":
                message = f"groups nested too deeply (more than {MAX_NESTING} levels)"
                hint = "flatten the groups, or split the pattern"
            else:
                message = (f"expression nested too deeply (more than {MAX_NESTING} levels of "
                           "operators, brackets or calls)")
                hint = ("simplify it: use `in [...]` instead of long `or` chains, or compute "
                        "parts with `let`")
            self.error(deep, message, "E151", hint)
            return None
        name = tokens(node)[0]
        span = span_of(node)
        header = _Header()
        clause_spans: list[tuple[str, Span]] = []
        lets: list[Let] = []
        sequence: Sequence | None = None
        for child in trees(node):
            kind = child.data
            if kind in _HEADER_KEYWORDS:
                keyword = _HEADER_KEYWORDS[kind]
                if keyword != "let" and any(k == keyword for k, _ in clause_spans):
                    self.error(
                        child, f"duplicate `{keyword}` clause", "E106",
                        f"a pattern takes at most one `{keyword}` clause; remove one of them",
                    )
                    clause_spans.append((keyword, span_of(child)))
                    continue
                clause_spans.append((keyword, span_of(child)))
                if kind == "let_clause":
                    let_name, let_expr = child.children
                    assert isinstance(let_name, Token) and isinstance(let_expr, Tree)
                    lets.append(Let(str(let_name), self.expr(let_expr), span_of(child)))
                else:
                    self._header(child, header)
            elif kind == "match_clause":
                clause_spans.append(("match", span_of(child)))
                sequence = self.sequence(trees(child)[0])
            elif kind == "emit_clause":
                clause_spans.append(("emit", span_of(child)))
                header.emit = self.emit(child)
            elif kind == "timeout_clause":
                clause_spans.append(("on timeout emit", span_of(child)))
                header.timeout_emit = self.emit(child)
        assert sequence is not None  # the grammar requires `match`
        self._check_stage_count(sequence)
        return Pattern(
            name=str(name),
            sequence=sequence,
            span=span,
            description=header.description,
            streams=header.streams,
            key=header.key,
            time_field=header.time_field,
            time_arrival=header.time_arrival,
            order_by=header.order_by,
            within_ms=header.within_ms,
            skip=header.skip,
            lets=tuple(lets),
            emit=header.emit,
            timeout_emit=header.timeout_emit,
            source=self.source[span.start : span.end],
            file=self.file,
            clause_spans=tuple(clause_spans),
        )

    def _header(self, node: LarkTree, header: _Header) -> None:
        kind = node.data
        toks = tokens(node)
        if kind == "description_clause":
            header.description = self.string_value(toks[0])
        elif kind == "from_clause":
            header.streams = tuple(
                self.string_value(t) if t.type == "STRING" else str(t) for t in toks
            )
        elif kind == "key_clause":
            header.key = tuple(self._path(p) for p in trees(node))
        elif kind == "time_clause":
            if toks and toks[0].type == "ARRIVAL":
                header.time_arrival = True
            else:
                header.time_field = self._path(trees(node)[0])
        elif kind == "order_clause":
            header.order_by = tuple(self._path(p) for p in trees(node))
        elif kind == "within_clause":
            header.within_ms = self._duration_value(toks[0])
        else:
            stage = str(toks[0]) if toks else None
            header.skip = Skip(_SKIP_KINDS[kind], stage, span_of(node))

    @staticmethod
    def _path(node: LarkTree) -> tuple[str, ...]:
        return tuple(str(t) for t in tokens(node))

    def _check_stage_count(self, sequence: Sequence) -> None:
        stages = stages_of(sequence)
        if len(stages) > MAX_STAGES:
            self.error(
                stages[MAX_STAGES].name_span,
                f"too many stages in one pattern (limit {MAX_STAGES})", "E152",
                "split the pattern, or use a quantifier instead of repeating stages",
            )

    # ------------------------------------------------------------------ sequence

    def sequence(self, node: LarkTree) -> Sequence:
        steps: list[Step] = []
        connector: Connector | None = None
        connector_span: Span | None = None
        for child in trees(node):
            if child.data in _CONNECTORS:
                connector = _CONNECTORS[child.data]
                connector_span = span_of(child)
                continue
            element = self.stage(child) if child.data == "stage" else self.group(child)
            span = element.span if connector_span is None else join(connector_span, element.span)
            steps.append(Step(connector, element, span))
        return Sequence(tuple(steps), span_of(node))

    def stage(self, node: LarkTree) -> Stage:
        negated = False
        name: Token | None = None
        parts = self._element_parts(node)
        for child in node.children:
            if isinstance(child, Token) and child.type == "NOT":
                negated = True
            elif isinstance(child, Token) and child.type == "NAME":
                name = child
        assert name is not None
        return Stage(
            name=str(name),
            span=span_of(node),
            negated=negated,
            quantifier=parts.quantifier,
            optional=parts.optional,
            greedy=parts.greedy,
            consecutive=parts.consecutive,
            combinations=parts.combinations,
            where=parts.where,
            until=parts.until,
            within_ms=parts.within_ms,
            name_span=span_of(name),
        )

    def group(self, node: LarkTree) -> Group:
        parts = self._element_parts(node)
        return Group(
            body=self.sequence(trees(node)[0]),
            span=span_of(node),
            quantifier=parts.quantifier,
            optional=parts.optional,
            greedy=parts.greedy,
            consecutive=parts.consecutive,
            combinations=parts.combinations,
            until=parts.until,
            within_ms=parts.within_ms,
        )

    def _element_parts(self, node: LarkTree) -> _Parts:
        """Quantifier, modifiers, where, until and within of a stage or group."""
        parts = _Parts()
        seen: set[str] = set()
        for child in node.children:
            if isinstance(child, Token):
                mod = str(child)
                if child.type not in ("GREEDY", "CONSECUTIVE", "COMBINATIONS"):
                    continue
                if mod in seen:
                    self.error(child, f"duplicate `{mod}` modifier", "E107", f"write `{mod}` once")
                seen.add(mod)
                parts.greedy |= child.type == "GREEDY"
                parts.consecutive |= child.type == "CONSECUTIVE"
                parts.combinations |= child.type == "COMBINATIONS"
            elif child.data.startswith("q_"):
                parts.quantifier, parts.optional = self.quantifier(child)
            elif child.data == "where":
                parts.where = self.expr(trees(child)[0])
            elif child.data == "until":
                parts.until = self.expr(trees(child)[0])
            elif child.data == "stage_within":
                parts.within_ms = self._duration_value(tokens(child)[0])
        return parts

    def quantifier(self, node: LarkTree) -> tuple[Quantifier | None, bool]:
        """(quantifier, optional). `*` is (1, None) + optional; `{0,m}` is (1, m) +
        optional; `{0}` and `{0,0}` stay (0, 0) for the checker to reject."""
        span = span_of(node)
        toks = tokens(node)
        trailing_q = bool(toks) and toks[-1].type == "QMARK" and node.data != "q_opt"
        nums = [self._bound(t) for t in toks if t.type == "NUMBER"]
        kind = node.data
        if kind == "q_opt":
            return None, True
        if kind == "q_plus":
            return Quantifier(1, None, span), trailing_q
        if kind == "q_star":
            return Quantifier(1, None, span), True
        if kind == "q_exact":
            return Quantifier(nums[0], nums[0], span), trailing_q
        if kind == "q_min":
            if nums[0] == 0:
                return Quantifier(1, None, span), True
            return Quantifier(nums[0], None, span), trailing_q
        if kind == "q_max":
            if nums[0] == 0:
                return Quantifier(0, 0, span), trailing_q
            return Quantifier(1, nums[0], span), True
        low, high = nums
        if low == 0 and high > 0:
            return Quantifier(1, high, span), True
        return Quantifier(low, high, span), trailing_q

    def _bound(self, token: Token) -> int:
        text = str(token)
        if not text.isdigit():
            self.error(token, f"quantifier bound `{text}` is not a whole number", "E109",
                       "write a count such as {2} or {2,5}")
            return 1
        if len(text.lstrip("0")) > 6 or int(text) > MAX_QUANTIFIER:
            self.error(
                token, f"quantifier bound {text[:20]} is too large (limit {MAX_QUANTIFIER})",
                "E154",
                f"use at most {MAX_QUANTIFIER}; for more events use `{{n,}}` with `until` "
                "or an aggregate such as count(s)",
            )
            return MAX_QUANTIFIER
        return int(text)

    # ------------------------------------------------------------------ emit

    def emit(self, node: LarkTree) -> Emit:
        topic: str | None = None
        severity: Severity | None = None
        when: Expr | None = None
        measures: list[Measure] = []
        for child in trees(node):
            if child.data == "emit_to":
                topic = self.string_value(tokens(child)[0])
            elif child.data == "emit_severity":
                severity = cast(Severity, str(tokens(child)[0]))
            elif child.data == "emit_when":
                when = self.expr(trees(child)[0])
            elif child.data == "measures":
                for m in trees(child):
                    m_name, m_expr = m.children
                    assert isinstance(m_name, Token) and isinstance(m_expr, Tree)
                    measures.append(Measure(str(m_name), self.expr(m_expr), span_of(m)))
        return Emit(topic, severity, when, tuple(measures), span_of(node))


__all__ = ["Builder"]
