"""Building `Diagnostic`s: a position, a caret snippet and a hint, from a `Span`.

Shared by the parser (syntax errors, limits) and the checker (every semantic rule).
"""

from __future__ import annotations

from collections.abc import Iterable

from cep.dsl.ast import Span
from cep.errors import Diagnostic

SNIPPET_WIDTH = 100
"""Longest part of a source line shown in a snippet; longer lines are cut around the caret."""

_INVISIBLE = {chr(c) for c in range(32)} | {chr(c) for c in range(0x7F, 0xA0)} | {
    "\u2028", "\u2029", "\ufeff",
}


def _line_text(source: str, line: int) -> str | None:
    """The text of 1-based line `line` of `source`, without its line break."""
    pos = 0
    for _ in range(line - 1):
        nl = source.find("\n", pos)
        if nl < 0:
            return None
        pos = nl + 1
    end = source.find("\n", pos)
    return source[pos:] if end < 0 else source[pos:end]


def _printable(text: str) -> str:
    """One display character per source character, so carets stay aligned."""
    return "".join(" " if ch == "\t" else "?" if ch in _INVISIBLE else ch for ch in text)


def _line_at(source: str, offset: int, column: int) -> str | None:
    """The line holding `offset`, if `offset` is at `column` of it (cheap: no scan from
    the start of the source)."""
    if not 0 <= offset <= len(source):
        return None
    start = source.rfind("\n", 0, offset) + 1
    if offset - start + 1 != column:
        return None
    end = source.find("\n", start)
    return source[start:] if end < 0 else source[start:end]


def snippet(
    source: str,
    line: int,
    column: int,
    end_line: int = 0,
    end_column: int = 0,
    offset: int | None = None,
) -> str:
    """Two lines: the source line (with its number) and `^` under the span's first line.
    `offset` (0-based, of line:column) avoids scanning the source from its start."""
    if line < 1 or column < 1:
        return ""
    text = _line_at(source, offset, column) if offset is not None else None
    if text is None:
        text = _line_text(source, line)
    if text is None:
        return ""
    text = text.rstrip("\r")
    start = min(column - 1, len(text))
    if end_line == line and end_column > column:
        width = end_column - column
    elif end_line > line:
        width = len(text) - start
    else:
        width = 1
    width = max(1, min(width, max(1, len(text) - start)))
    left = 0
    if len(text) > SNIPPET_WIDTH:
        left = max(0, min(start - SNIPPET_WIDTH // 3, len(text) - SNIPPET_WIDTH))
    shown = _printable(text[left : left + SNIPPET_WIDTH])
    caret = start - left
    if left > 0:
        shown = "…" + shown
        caret += 1
    if left + SNIPPET_WIDTH < len(text):
        shown += "…"
    width = max(1, min(width, len(shown) - caret))
    gutter = str(line)
    return f"{gutter} | {shown}\n{' ' * len(gutter)} | {' ' * caret}{'^' * width}"


def diagnostic(
    source: str,
    file: str | None,
    span: Span,
    message: str,
    code: str,
    hint: str | None = None,
    severity: str = "error",
) -> Diagnostic:
    """A diagnostic for `span` of `source`, with its caret snippet."""
    line = max(span.line, 1)
    column = max(span.column, 1)
    end_line = span.end_line if span.end_line >= line else line
    end_column = span.end_column if span.end_line >= line else column + 1
    return Diagnostic(
        message=message,
        line=line,
        column=column,
        end_line=end_line,
        end_column=end_column,
        file=file,
        snippet=snippet(
            source, line, column, end_line, end_column,
            span.start if span.end > span.start or span.start > 0 else None,
        ),
        hint=hint,
        code=code,
        severity=severity,
    )


def in_source_order(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics sorted by position (stable for equal positions), duplicates dropped."""
    seen: set[tuple[str, int, int, str, str]] = set()
    out: list[Diagnostic] = []
    for d in sorted(diags, key=lambda d: (d.file or "", d.line, d.column)):
        k = (d.file or "", d.line, d.column, d.code, d.message)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return out


def describe(names: Iterable[str], limit: int = 8) -> str:
    """`a`, `b` or `c` - a short human list of names."""
    items = [f"`{n}`" for n in names]
    if len(items) > limit:
        items = [*items[:limit], "…"]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
