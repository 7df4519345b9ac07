"""Syntax errors: each one a PatternError diagnostic with line, column, message, code,
a caret snippet and a hint in plain words."""

from __future__ import annotations

import pytest

from cep.dsl import parse
from cep.errors import Diagnostic, PatternError


def errors(source: str) -> tuple[Diagnostic, ...]:
    with pytest.raises(PatternError) as info:
        parse(source, "t.cep")
    return info.value.diagnostics


CASES = [
    # source, line, column, code, message fragment, hint fragment
    ("pattern p { match a where x = 1 }", 1, 29, "E100", "unexpected `=`", "`==`"),
    ("pattern p {\n  within 10\n  match a\n}", 2, 10, "E100", "number `10`", "duration"),
    ("pattern p {\n  match a where x > 10min\n}", 2, 23, "E100", "duration unit", "10m"),
    ('pattern p {\n  descripton "a"\n  match a\n}', 2, 3, "E100", "name `descripton`",
     "did you mean `description`"),
    ("", 1, 1, "E103", "no pattern", "pattern NAME"),
    ("# just a comment\n", 1, 1, "E103", "no pattern", "pattern NAME"),
    ('pattern p { match a where s == "abc }', 1, 32, "E102", "unterminated string", "close"),
    ("pattern p { match a where x & y }", 1, 29, "E101", "character `&`", "`and`"),
    ("pattern p { match a where x ! y }", 1, 29, "E101", "character `!`", "`not`"),
    ("pattern p { match a where x > }", 1, 31, "E100", "unexpected `}`", "an expression"),
    ("pattern p { match a where (x > 1 }", 1, 34, "E100", "unexpected `}`", "`)`"),
    ("pattern p { match a where x > 1 ", 1, 32, "E103", "end of input", "`}`"),
    ("pattern p { match a then }", 1, 26, "E100", "unexpected `}`", "a name"),
    ("pattern p { }", 1, 13, "E100", "unexpected `}`", "`match`"),
    ("pattern { match a }", 1, 9, "E100", "unexpected `{`", "a name"),
    ("pattern p { match a{2,b} }", 1, 23, "E100", "name `b`", "a number"),
    ("pattern p { match a{2.5} }", 1, 21, "E109", "not a whole number", "{2,5}"),
    ("pattern p { match a?? }", 1, 21, "E100", "unexpected `?`", "`where`"),
    ("pattern p { match a where a < b < c }", 1, 33, "E100", "unexpected `<`", None),
    ("pattern p { match a emit severity urgent }", 1, 35, "E100", "name `urgent`",
     "`critical`, `high`, `low`, `medium`"),
    ("pattern p { match a emit { x } }", 1, 30, "E100", "unexpected `}`", "`=`"),
    ("pattern p { within 5m within 6m match a }", 1, 23, "E106", "duplicate `within`", None),
    ('pattern p { description "a" key k description "b" match a }', 1, 35, "E106",
     "duplicate `description`", "at most one"),
    ("pattern p { match a+ greedy greedy }", 1, 29, "E107", "duplicate `greedy`", None),
    ("pattern p { match a where score(m, a=1, 2) > 0 }", 1, 41, "E108",
     "positional argument after a keyword", None),
    ('pattern p { match a where x == "\\x4" }', 1, 33, "E104", "invalid escape", "hex digits"),
    ('pattern p { match a where x == "ok\\ud800" }', 1, 35, "E104", "not a Unicode scalar",
     None),
    ("pattern p { skip to a match a }", 1, 21, "E100", "name `a`", "`first`"),
    ("pattern p { match a where x > 1 } }", 1, 35, "E100", "unexpected `}`", "end of input"),
    ("pattern p { match a where x == 'a' \n  emit { y = @ } }", 2, 14, "E101",
     "character `@`", "an expression"),
    ("pattern p { match a where x in [1 2] }", 1, 35, "E100", "number `2`", "`]`"),
    ("pattern p { match a } garbage", 1, 23, "E100", "name `garbage`", "`pattern`"),
    ("pattern p { match a within 5 }", 1, 28, "E100", "number `5`", "duration"),
    ("pattern p { match a where first(s).1 > 0 }", 1, 36, "E100", "number `1`", "a name"),
    ("pattern p { match a where x > 1e400 }", 1, 31, "E105", "out of range", None),
    ("pattern p { match a where x > 99999999999999999999 }", 1, 31, "E105", "out of range",
     None),
    ("pattern p { match a where x == 1\x00 }", 1, 33, "E101", "U+0000", None),
]


@pytest.mark.parametrize(("source", "line", "column", "code", "message", "hint"), CASES)
def test_syntax_error(
    source: str, line: int, column: int, code: str, message: str, hint: str | None
) -> None:
    first = errors(source)[0]
    assert (first.line, first.column, first.code) == (line, column, code), first.format()
    assert message in first.message
    if hint is not None:
        assert first.hint is not None and hint in first.hint, first.hint
    assert first.file == "t.cep" and first.severity == "error"
    # the caret snippet: the source line, then a caret under the column
    src_line, caret_line = first.snippet.split("\n")
    assert src_line.startswith(f"{line} | ")
    gutter = len(f"{line} | ")
    assert caret_line[gutter:].index("^") == column - 1


def test_snippet_and_format() -> None:
    (d,) = errors("pattern p {\n  match a where amount =  5\n}")
    assert d.snippet == "2 |   match a where amount =  5\n  |                        ^"
    assert d.format().startswith("t.cep:2:24: error[E100]: unexpected `=`\n2 |")
    assert d.to_json()["line"] == 2


def test_snippet_of_a_long_line_is_cut_around_the_caret() -> None:
    source = "pattern p { match a where " + " and ".join(f"x{i} > 1" for i in range(60)) + " = }"
    (d,) = errors(source)
    src_line, caret_line = d.snippet.split("\n")
    assert len(src_line) < 120 and "…" in src_line
    assert src_line[caret_line.index("^")] == "="


def test_one_error_per_broken_pattern() -> None:
    source = (
        "pattern ok { match a }\n"
        "pattern q { match b where }\n"
        "pattern r { match c d }\n"
        "pattern s { within 1m within 2m match e }\n"
    )
    found = [(d.line, d.column, d.code) for d in errors(source)]
    assert found == [(2, 27, "E100"), (3, 21, "E100"), (4, 23, "E106")]


def test_missing_closing_brace_is_reported_where_the_pattern_ends() -> None:
    diags = errors("pattern a { match x\npattern b { match y where }\n")
    assert [(d.line, d.column, d.code) for d in diags] == [(1, 20, "E103"), (2, 27, "E100")]
    assert diags[0].hint is not None and "`}`" in diags[0].hint


def test_too_many_errors_stop() -> None:
    source = "".join(f"pattern p{i} {{ match a where }}\n" for i in range(40))
    diags = errors(source)
    assert len(diags) <= 22 and diags[-1].code == "E155"


def test_no_lark_object_leaves_the_parser() -> None:
    with pytest.raises(PatternError) as info:
        parse("pattern p { match a where }")
    err = info.value
    assert err.__cause__ is None and err.__suppress_context__
    assert all(type(d) is Diagnostic for d in err.diagnostics)
    pf = parse("pattern p { match a where x > 1 }")
    seen: list[object] = [pf]
    while seen:
        obj = seen.pop()
        assert not type(obj).__module__.startswith("lark"), obj
        if isinstance(obj, tuple | list):
            seen.extend(obj)
        elif hasattr(obj, "__dataclass_fields__"):
            seen.extend(getattr(obj, name) for name in obj.__dataclass_fields__)
