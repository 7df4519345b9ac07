"""Pattern source -> `PatternFile` (our AST), or `PatternError` with diagnostics.

The Lark LALR parser is built once, lazily, from `grammar.lark` (package data). On a
syntax error the file is re-parsed pattern by pattern (each `pattern NAME {` at the
start of a line begins a chunk), so one broken pattern does not hide the errors of
the others. No Lark object leaves `cep.dsl`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr
from lark.utils import TextSlice

from cep.dsl.ast import PatternFile, Span
from cep.dsl.diagnostics import diagnostic, in_source_order
from cep.dsl.limits import MAX_NESTING, MAX_SOURCE_BYTES, MAX_SYNTAX_ERRORS
from cep.dsl.syntax_errors import syntax_diagnostic
from cep.dsl.transform import Builder
from cep.errors import Diagnostic, PatternError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHUNK_START = re.compile(r"^[ \t\f\r]*(pattern)\s+[A-Za-z_][A-Za-z0-9_]*\s*\{", re.MULTILINE)
_BLANK = re.compile(r"(?:\s|#[^\n]*)*")
# Strings and comments (skipped) and brackets (counted), for the nesting pre-check.
_BRACKETS = re.compile(r"""\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|#[^\n]*|[()\[\]]""")
_SHALLOW = 200  # parser stacks deeper than this skip the (costly) precise `accepts()`


@dataclass(frozen=True, slots=True)
class _Grammar:
    lark: Lark
    displays: dict[str, str]  # terminal name -> its literal text, for string terminals
    keywords: frozenset[str]  # terminal names of word-like keywords


_lock = threading.Lock()
_grammar: _Grammar | None = None


def _load() -> _Grammar:
    """The cached parser (built on first use; thread-safe)."""
    global _grammar
    if _grammar is None:
        with _lock:
            if _grammar is None:
                text = resources.files("cep.dsl").joinpath("grammar.lark").read_text("utf-8")
                lark = Lark(
                    text,
                    parser="lalr",
                    lexer="contextual",
                    propagate_positions=True,
                    maybe_placeholders=False,
                )
                displays = {
                    t.name: t.pattern.value
                    for t in lark.terminals
                    if isinstance(t.pattern, PatternStr)
                }
                keywords = frozenset(n for n, v in displays.items() if _IDENTIFIER.fullmatch(v))
                _grammar = _Grammar(lark, displays, keywords)
    return _grammar


def _keyword_as_name(grammar: _Grammar) -> Callable[[UnexpectedInput], bool]:
    """An `on_error` callback: a keyword where only a name fits is taken as that name.

    LALR merges parser states, so the contextual lexer sometimes offers a keyword in a
    spot where, after reductions, only a name is valid (a measure called `time` after
    `card = key`). Feeding the word as NAME makes keywords truly contextual.
    """

    def on_error(err: UnexpectedInput) -> bool:
        if not isinstance(err, UnexpectedToken) or err.token.type not in grammar.keywords:
            return False
        parser = err.interactive_parser
        if parser is None or len(parser.parser_state.state_stack) > _SHALLOW:
            return False
        if "NAME" not in parser.accepts():  # type: ignore[no-untyped-call]
            return False
        parser.feed_token(Token.new_borrow_pos("NAME", err.token.value, err.token))
        return True

    return on_error


def _parse_tree(grammar: _Grammar, text: str | TextSlice[str]) -> Tree[Token]:
    on_error = _keyword_as_name(grammar)
    return grammar.lark.parse(text, on_error=on_error)


def _too_large(source: str, file: str | None) -> Diagnostic | None:
    size = len(source)
    if size <= MAX_SOURCE_BYTES // 4:
        return None
    if size <= MAX_SOURCE_BYTES:
        size = len(source.encode("utf-8", "surrogatepass"))
        if size <= MAX_SOURCE_BYTES:
            return None
    return _size_diagnostic(size, file)


def _size_diagnostic(size: int, file: str | None) -> Diagnostic:
    return Diagnostic(
        message=f"source too large (at least {size} bytes; the limit is {MAX_SOURCE_BYTES})",
        line=1, column=1, end_line=1, end_column=2, file=file,
        hint="split the patterns over several files",
        code="E150",
    )


def _internal_limit(text: str, file: str | None, err: BaseException) -> Diagnostic:
    return diagnostic(
        text, file, Span(1, 1, 1, 2), f"the source could not be parsed ({type(err).__name__})",
        "E151", f"simplify deeply nested parts (the limit is {MAX_NESTING} levels)",
    )


def _too_deep(text: str, file: str | None) -> Diagnostic | None:
    """Brackets nested deeper than MAX_NESTING, found before parsing: pathological
    nesting never reaches the parser (whose stacks and error reports it would bloat)."""
    depth = 0
    for m in _BRACKETS.finditer(text):
        ch = m.group()
        if ch == "(" or ch == "[":
            depth += 1
            if depth > MAX_NESTING:
                start = m.start()
                line = text.count("\n", 0, start) + 1
                column = start - (text.rfind("\n", 0, start) + 1) + 1
                return diagnostic(
                    text, file, Span(line, column, line, column + 1, start, start + 1),
                    f"brackets nested too deeply (more than {MAX_NESTING} levels)", "E151",
                    "simplify the expression or the groups; compute parts with `let`",
                )
        elif ch == ")" or ch == "]":
            depth = max(0, depth - 1)
    return None


def _chunks(text: str) -> list[tuple[int, int]]:
    """(start, end) of each `pattern NAME {` chunk; a leading chunk holding only
    comments is dropped."""
    starts = [m.start(1) for m in _CHUNK_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    bounds = list(zip(starts, [*starts[1:], len(text)], strict=True))
    return [(a, b) for a, b in bounds if not _BLANK.fullmatch(text, a, b)]


def _collect_errors(
    grammar: _Grammar, text: str, file: str | None, first: UnexpectedInput
) -> list[Diagnostic]:
    """Every syntax error worth reporting: each pattern chunk is parsed on its own."""
    chunks = _chunks(text)
    if len(chunks) <= 1:
        return [syntax_diagnostic(first, text, file, grammar.displays, grammar.keywords)]
    diags: list[Diagnostic] = []
    for start, end in chunks:
        builder = Builder(text, file)
        try:
            builder.build_file(_parse_tree(grammar, TextSlice(text, start, end)))
        except UnexpectedInput as err:
            diags.append(syntax_diagnostic(err, text, file, grammar.displays, grammar.keywords))
        except (LarkError, RecursionError) as err:
            diags.append(_internal_limit(text, file, err))
        diags.extend(builder.diags)
        if len(diags) >= MAX_SYNTAX_ERRORS:
            last = diags[-1]
            diags.append(Diagnostic(
                message=f"too many errors; stopped after {len(diags)}",
                line=last.line, column=last.column, end_line=last.end_line,
                end_column=last.end_column, file=file, code="E155",
                hint="fix these first", severity="error",
            ))
            break
    if not any(d.code.startswith("E10") for d in diags):
        # The chunks parse on their own but the file does not: report the file's error.
        diags.append(syntax_diagnostic(first, text, file, grammar.displays, grammar.keywords))
    return diags


def decode(data: bytes, file: str | None = None) -> str:
    """UTF-8 bytes -> text, or PatternError E111 pointing at the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        prefix = data[: err.start].decode("utf-8", "replace")
        line = prefix.count("\n") + 1
        column = len(prefix) - (prefix.rfind("\n") + 1) + 1
        raise PatternError([Diagnostic(
            message="pattern source is not valid UTF-8", line=line, column=column,
            end_line=line, end_column=column + 1, file=file, code="E111",
            hint="save the file as UTF-8",
        )]) from None


def parse(source: str | bytes, file: str | None = None) -> PatternFile:
    """Parse a `.cep` source (text, or UTF-8 bytes) into a `PatternFile`.

    Raises `PatternError` with every syntax error found (one per broken pattern at
    least), and with limit violations (size, nesting, stages, patterns, quantifier
    bounds). Never raises anything else, whatever the input.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > MAX_SOURCE_BYTES:
            raise PatternError([_size_diagnostic(len(data), file)])
        source = decode(data, file)
    too_large = _too_large(source, file)
    if too_large is not None:
        raise PatternError([too_large])
    # A byte-order mark becomes a space: offsets, lines and columns stay the same.
    text = " " + source[1:] if source.startswith("\ufeff") else source
    too_deep = _too_deep(text, file)
    if too_deep is not None:
        raise PatternError([too_deep])
    grammar = _load()
    try:
        tree = _parse_tree(grammar, text)
    except UnexpectedInput as err:
        raise PatternError(in_source_order(_collect_errors(grammar, text, file, err))) from None
    except (LarkError, RecursionError) as err:
        raise PatternError([_internal_limit(text, file, err)]) from None
    builder = Builder(text, file)
    try:
        patterns = builder.build_file(tree)
    except RecursionError as err:  # defensive: the nesting check should prevent it
        raise PatternError([_internal_limit(text, file, err)]) from None
    if builder.diags:
        raise PatternError(in_source_order(builder.diags))
    return PatternFile(patterns, source, file)
