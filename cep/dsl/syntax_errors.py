"""Lark's syntax exceptions -> Diagnostics with a plain-words hint.

`describe_expected` turns terminal names into words a pattern author knows ("a name",
"`within`", "an operator"); `syntax_diagnostic` picks the position, the message and a
hint for the common mistakes (a wrong duration unit, `=` for `==`, a misspelt clause,
an unterminated string).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from cep.dsl.ast import Span
from cep.dsl.diagnostics import diagnostic
from cep.errors import Diagnostic

_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "DURATION": "a duration such as 10m",
    "COMPARE_OP": "a comparison (== != < <= > >=)",
    "$END": "end of input",
}
_OPERATORS = frozenset({
    "PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "COMPARE_OP", "AND", "OR", "IN", "NOT",
    "MATCHES", "CONTAINS", "STARTS", "ENDS",
})
_EXPRESSION_STARTS = frozenset({
    "NAME", "NUMBER", "STRING", "DURATION", "TRUE", "FALSE", "NULL", "LSQB", "LPAR",
    "MINUS", "NOT",
})
_QUANTIFIER_STARTS = frozenset({"QMARK", "PLUS", "STAR", "LBRACE"})
_MAX_LISTED = 14
_SHALLOW = 200  # deeper parser stacks make `accepts()` (which copies them) too costly


def word_for(name: str, displays: Mapping[str, str]) -> str:
    """How to call terminal `name` in a message."""
    if name in _WORDS:
        return _WORDS[name]
    if name in displays:
        return f"`{displays[name]}`"
    return name.lower()


def describe_expected(expected: Collection[str], displays: Mapping[str, str]) -> str:
    """`expected one of: …` in plain words: keywords first, then kinds of things
    (operators, expressions and quantifiers grouped), then punctuation."""
    names = set(expected)
    groups: list[str] = []
    for members, word, at_least in (
        (_EXPRESSION_STARTS, "an expression", 6),
        (_OPERATORS, "an operator", 4),
        (_QUANTIFIER_STARTS, "a quantifier", 4),
    ):
        if len(names & members) >= at_least:
            names -= members
            groups.append(word)
    shown = [word_for(n, displays) for n in names]
    keywords = sorted(w for w in shown if w.startswith("`") and w[1:-1].isidentifier())
    punctuation = sorted(w for w in shown if w.startswith("`") and not w[1:-1].isidentifier())
    others = sorted(w for w in shown if not w.startswith("`"))
    words = [*keywords, *groups, *others, *punctuation]
    if len(words) > _MAX_LISTED:
        words = [*words[: _MAX_LISTED - 1], "…", words[-1]]
    if len(words) == 1:
        return f"expected {words[0]}"
    return "expected one of: " + ", ".join(words)


def _describe_token(token: Token, displays: Mapping[str, str], keywords: Collection[str]) -> str:
    value = str(token)
    shown = value if len(value) <= 30 else value[:30] + "…"
    if token.type in keywords:
        return f"keyword `{shown}`"
    if token.type == "NAME":
        return f"name `{shown}`"
    if token.type == "NUMBER":
        return f"number `{shown}`"
    if token.type == "DURATION":
        return f"duration `{shown}`"
    if token.type == "STRING":
        return f"string {shown}"
    return f"`{displays.get(token.type, shown)}`"


def _token_span(token: Token) -> Span:
    return Span(
        token.line or 1, token.column or 1, token.end_line or token.line or 1,
        token.end_column or (token.column or 1) + 1, token.start_pos or 0, token.end_pos or 0,
    )


def _close_keyword(
    value: str, expected: Collection[str], displays: Mapping[str, str]
) -> str | None:
    candidates = [displays[n] for n in expected if n in displays and displays[n].isidentifier()]
    close = difflib.get_close_matches(value, candidates, n=1, cutoff=0.75)
    return close[0] if close else None


def _expected(err: UnexpectedToken) -> Collection[str]:
    """The precise set of acceptable terminals when affordable, else the parse table's."""
    parser = err.interactive_parser
    if parser is not None and len(parser.parser_state.state_stack) <= _SHALLOW:
        return err.accepts or err.expected or ()
    return err.expected or ()


def _unexpected_token(
    err: UnexpectedToken,
    text: str,
    file: str | None,
    displays: Mapping[str, str],
    keywords: Collection[str],
) -> Diagnostic:
    token = err.token
    expected: set[str] = set(_expected(err))
    hint: str | None = describe_expected(expected, displays) if expected else None
    if token.type == "$END":
        line = token.end_line or token.line or 1
        column = token.end_column or token.column or 1
        span = Span(line, column, line, column + 1, token.end_pos or 0, token.end_pos or 0)
        if not text.strip() or ("PATTERN" in expected and len(expected) == 1):
            return diagnostic(
                text, file, span, "the source holds no pattern", "E103",
                "a file holds one or more `pattern NAME { … match … }`",
            )
        return diagnostic(text, file, span, "unexpected end of input", "E103", hint)
    span = _token_span(token)
    message = f"unexpected {_describe_token(token, displays, keywords)}"
    start = token.start_pos or 0
    if token.type == "NAME" and start > 0 and text[start - 1].isdigit():
        message = f"unknown duration unit or misplaced name `{token}` after a number"
        hint = "durations are written 250ms, 30s, 10m, 2h or 7d"
    elif token.type == "EQUAL" and "COMPARE_OP" in expected:
        hint = "to compare two values write `==`"
    elif token.type == "NAME":
        close = _close_keyword(str(token), expected, displays)
        if close is not None:
            hint = f"did you mean `{close}`?"
    elif token.type in keywords and "NAME" in expected:
        hint = f"`{token}` is a keyword here and cannot be used as a name; {hint}"
    return diagnostic(text, file, span, message, "E100", hint)


def _unexpected_character(
    err: UnexpectedCharacters, text: str, file: str | None, displays: Mapping[str, str],
) -> Diagnostic:
    pos = err.pos_in_stream or 0
    line, column = err.line, err.column
    char = text[pos] if pos < len(text) else ""
    if char in ("'", '"'):
        eol = text.find("\n", pos)
        end = len(text) if eol < 0 else eol
        span = Span(line, column, line, column + max(1, end - pos), pos, end)
        return diagnostic(
            text, file, span, "unterminated string", "E102",
            f"close the string with {char} on the same line; write \\n for a line break",
        )
    span = Span(line, column, line, column + 1, pos, pos + 1)
    shown = f"`{char}`" if char.isprintable() and not char.isspace() else f"U+{ord(char):04X}"
    hint: str | None = None
    if char == "!":
        hint = "write `not` to negate, or `!=` to compare"
    elif char in "&|":
        hint = "write `and` / `or`"
    elif err.allowed:
        hint = describe_expected(err.allowed, displays)
    return diagnostic(text, file, span, f"unexpected character {shown}", "E101", hint)


def syntax_diagnostic(
    err: UnexpectedInput,
    text: str,
    file: str | None,
    displays: Mapping[str, str],
    keywords: Collection[str],
) -> Diagnostic:
    """The diagnostic for one Lark syntax exception."""
    if isinstance(err, UnexpectedCharacters):
        return _unexpected_character(err, text, file, displays)
    if isinstance(err, UnexpectedToken):
        return _unexpected_token(err, text, file, displays, keywords)
    line = max(err.line, 1) if isinstance(err.line, int) else 1
    column = max(err.column, 1) if isinstance(err.column, int) else 1
    return diagnostic(
        text, file, Span(line, column, line, column + 1), "syntax error", "E100",
    )
