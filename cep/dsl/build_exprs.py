"""Lark expression subtrees -> AST expressions, plus what every builder needs: spans,
diagnostics, literal values. `transform.Builder` extends it with patterns and sequences.

The recursion here is bounded: the parser rejects deeper nesting before building.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from lark import Token, Tree

from cep.dsl.ast import (
    NO_SPAN,
    Binary,
    BinaryOpName,
    BoolOp,
    Call,
    Compare,
    CompareOpName,
    Expr,
    ListLit,
    Literal,
    Member,
    Ref,
    Span,
    Unary,
)
from cep.dsl.diagnostics import diagnostic
from cep.dsl.lexemes import LexemeError, decode_string, parse_duration, parse_number
from cep.dsl.limits import MAX_NESTING
from cep.errors import Diagnostic

LarkTree = Tree[Token]
Node = LarkTree | Token

NESTING_RULES = frozenset({
    "or_op", "and_op", "not_op", "compare", "not_in_op", "in_op", "matches_op",
    "contains_op", "starts_op", "ends_op", "binary", "neg", "member", "call", "paren",
    "list", "group",
})

_WORD_COMPARES: dict[str, CompareOpName] = {
    "in_op": "in",
    "not_in_op": "not in",
    "matches_op": "matches",
    "contains_op": "contains",
    "starts_op": "starts with",
    "ends_op": "ends with",
}


def span_of(node: Node) -> Span:
    """The source span of a token or a tree (trees get theirs from propagate_positions)."""
    if isinstance(node, Token):
        return Span(
            node.line or 0, node.column or 0, node.end_line or 0, node.end_column or 0,
            node.start_pos or 0, node.end_pos or 0,
        )
    meta = node.meta
    if meta.empty:
        return NO_SPAN
    return Span(
        meta.line, meta.column, meta.end_line, meta.end_column, meta.start_pos, meta.end_pos,
    )


def join(first: Span, last: Span) -> Span:
    """The span from the start of `first` to the end of `last`."""
    return Span(first.line, first.column, last.end_line, last.end_column, first.start, last.end)


def first_too_deep(root: LarkTree) -> LarkTree | None:
    """The outermost expression or group holding nodes nested deeper than MAX_NESTING
    (found without recursion), or None."""
    stack: list[tuple[LarkTree, int, LarkTree | None]] = [(root, 0, None)]
    while stack:
        node, depth, outermost = stack.pop()
        if node.data in NESTING_RULES:
            depth += 1
            outermost = outermost or node
            if depth > MAX_NESTING:
                return outermost
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth, outermost))
    return None


def trees(node: LarkTree) -> list[LarkTree]:
    return [c for c in node.children if isinstance(c, Tree)]


def tokens(node: LarkTree) -> list[Token]:
    return [c for c in node.children if isinstance(c, Token)]


class ExprBuilder:
    """Builds expressions, collecting diagnostics in `diags`."""

    def __init__(self, source: str, file: str | None) -> None:
        self.source = source
        self.file = file
        self.diags: list[Diagnostic] = []
        self._expr_builders: dict[str, Callable[[LarkTree], Expr]] = {
            "or_op": self._bool_op,
            "and_op": self._bool_op,
            "not_op": self._not,
            "compare": self._compare,
            "binary": self._binary,
            "neg": self._neg,
            "member": self._member,
            "call": self._call,
            "paren": lambda t: self.expr(trees(t)[0]),
            "number": self._number,
            "duration": self._duration,
            "string": self._string,
            "true": lambda t: Literal(True, span_of(t)),
            "false": lambda t: Literal(False, span_of(t)),
            "null": lambda t: Literal(None, span_of(t)),
            "ref": lambda t: Ref(tuple(str(n) for n in tokens(t)), span_of(t)),
            "list": lambda t: ListLit(tuple(self.expr(c) for c in trees(t)), span_of(t)),
        }
        for rule in _WORD_COMPARES:
            self._expr_builders[rule] = self._word_compare

    # ------------------------------------------------------------------ helpers

    def error(self, where: Node | Span, message: str, code: str, hint: str | None = None) -> None:
        span = where if isinstance(where, Span) else span_of(where)
        self.diags.append(diagnostic(self.source, self.file, span, message, code, hint))

    def _lexeme_error(self, token: Token, err: LexemeError, code: str) -> None:
        base = span_of(token)
        col = base.column + err.offset
        span = Span(base.line, col, base.line, col + err.length,
                    base.start + err.offset, base.start + err.offset + err.length)
        self.error(span, err.message, code, err.hint)

    def string_value(self, token: Token) -> str:
        try:
            return decode_string(str(token))
        except LexemeError as err:
            self._lexeme_error(token, err, "E104")
            return ""

    def _duration_value(self, token: Token) -> int:
        try:
            return parse_duration(str(token))
        except LexemeError as err:
            self._lexeme_error(token, err, "E105")
            return 0

    # ------------------------------------------------------------------ expressions

    def expr(self, node: LarkTree) -> Expr:
        return self._expr_builders[node.data](node)

    def _operands(self, node: LarkTree) -> tuple[Expr, Expr]:
        left, right = trees(node)
        return self.expr(left), self.expr(right)

    def _bool_op(self, node: LarkTree) -> Expr:
        left, right = self._operands(node)
        return BoolOp("or" if node.data == "or_op" else "and", left, right, span_of(node))

    def _not(self, node: LarkTree) -> Expr:
        return Unary("not", self.expr(trees(node)[0]), span_of(node))

    def _compare(self, node: LarkTree) -> Expr:
        left, right = self._operands(node)
        op = cast(CompareOpName, str(tokens(node)[0]))
        return Compare(op, left, right, span_of(node))

    def _word_compare(self, node: LarkTree) -> Expr:
        left, right = self._operands(node)
        return Compare(_WORD_COMPARES[node.data], left, right, span_of(node))

    def _binary(self, node: LarkTree) -> Expr:
        left, right = self._operands(node)
        op = cast(BinaryOpName, str(tokens(node)[0]))
        return Binary(op, left, right, span_of(node))

    def _neg(self, node: LarkTree) -> Expr:
        operand = self.expr(trees(node)[0])
        span = span_of(node)
        if (
            isinstance(operand, Literal)
            and isinstance(operand.value, int | float)
            and not isinstance(operand.value, bool)
        ):
            return Literal(-operand.value, span, operand.is_duration)
        return Unary("-", operand, span)

    def _member(self, node: LarkTree) -> Expr:
        call, *names = node.children
        assert isinstance(call, Tree)
        return Member(self.expr(call), tuple(str(n) for n in names), span_of(node))

    def _call(self, node: LarkTree) -> Expr:
        name = tokens(node)[0]
        args: list[Expr] = []
        kwargs: list[tuple[str, Expr]] = []
        for group in trees(node):  # at most one `args` node
            for arg in trees(group):
                if arg.data == "kwarg":
                    kw_name, kw_expr = arg.children
                    assert isinstance(kw_name, Token) and isinstance(kw_expr, Tree)
                    kwargs.append((str(kw_name), self.expr(kw_expr)))
                    continue
                if kwargs:
                    self.error(
                        arg, "positional argument after a keyword argument", "E108",
                        "put positional arguments first, e.g. "
                        f"{name}(model, feature=expr, …)",
                    )
                args.append(self.expr(arg))
        return Call(str(name), tuple(args), tuple(kwargs), span_of(node))

    def _number(self, node: LarkTree) -> Expr:
        token = tokens(node)[0]
        try:
            return Literal(parse_number(str(token)), span_of(node))
        except LexemeError as err:
            self._lexeme_error(token, err, "E105")
            return Literal(0, span_of(node))

    def _duration(self, node: LarkTree) -> Expr:
        return Literal(self._duration_value(tokens(node)[0]), span_of(node), is_duration=True)

    def _string(self, node: LarkTree) -> Expr:
        return Literal(self.string_value(tokens(node)[0]), span_of(node))

