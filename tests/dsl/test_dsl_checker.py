"""One test per checker rule: the code, the position of the offending node, a snippet
and a hint; plus what must stay allowed."""

from __future__ import annotations

import pytest

from cep.dsl import check, parse
from cep.dsl.ast import (
    AGGREGATES,
    SCALAR_FUNCTIONS,
    Pattern,
    PatternFile,
    Sequence,
    Span,
    Stage,
    Step,
)
from cep.dsl.check_exprs import ARITY
from cep.dsl.checker import PATTERN_RULES
from cep.errors import Diagnostic

MODELS = {"m": ["f", "g"]}


def where(source: str, marker: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the nth occurrence of marker in source."""
    pos = -1
    for _ in range(nth + 1):
        pos = source.index(marker, pos + 1)
    line = source.count("\n", 0, pos) + 1
    return line, pos - (source.rfind("\n", 0, pos) + 1) + 1


def diags(source: str) -> list[Diagnostic]:
    return check(parse(source, "c.cep"), models=MODELS)


RULES = [
    # code, source, marker of the reported position, nth occurrence of the marker
    ("E200", "pattern p { match a }\npattern p { match b }", "pattern p", 1),
    ("E201", "pattern p { match a then (b then a)+ }", "a)", 0),
    ("E203", "pattern p { skip to first zz match a }", "skip", 0),
    ("E204", "pattern p { within 1m skip to last b match a then not b }", "skip", 0),
    # FlinkCEP rejects a skip target inside a group (issue 10, class 3)
    ("E205", "pattern p { skip to last b match a then (b then c){2} }", "skip", 0),
    ("E210", "pattern p { within 1m match a then not b+ }", "+", 0),
    ("E210", "pattern p { within 1m match a then not b? }", "not b", 0),
    ("E210", "pattern p { within 1m match a then not b greedy }", "not b", 0),
    ("E210", "pattern p { within 1m match a then not b until x }", "not b", 0),
    ("E211", "pattern p { match not a then b }", "not a", 0),
    ("E211", "pattern p { match a then (not b then c) }", "not b", 0),
    ("E212", "pattern p { match a? then not b then c }", "not b", 0),
    ("E212", "pattern p { match (a then b)* next not c then d }", "not c", 0),
    ("E213", "pattern p { match a then not b }", "then not", 0),
    ("E214", "pattern p { within 1m match a then any not b then c }", "then any", 0),
    ("E216", "pattern p { match a then (b then not c) then d }", "not c", 0),
    ("E220", "pattern p { match a greedy then b }", "a greedy", 0),
    ("E220", "pattern p { match a? greedy then b }", "a?", 0),
    ("E221", "pattern p { match (a then b)+ greedy then c }", "(a", 0),
    ("E222", "pattern p { match a+ greedy combinations then b }", "a+", 0),
    ("E223", "pattern p { match a consecutive then b }", "a consecutive", 0),
    ("E223", "pattern p { match (a then b) combinations then c }", "(a", 0),
    ("E224", "pattern p { match a+ consecutive combinations then b }", "a+", 0),
    ("E225", "pattern p { match a+ greedy then b? }", "b?", 0),
    ("E230", "pattern p { match a{3} until x > 1 then b }", "x > 1", 0),
    ("E230", "pattern p { match a until x > 1 then b }", "x > 1", 0),
    ("E230", "pattern p { match (a then b){2,4} until x then c }", "x then", 0),
    ("E231", "pattern p { match a then b within 0ms }", "b within", 0),
    ("E232", "pattern p { within 1m match a then b within 2m }", "b within", 0),
    ("E233", "pattern p { within 0s match a }", "within", 0),
    ("E234", "pattern p { match a{0} }", "{0}", 0),
    ("E234", "pattern p { match a{5,2} }", "{5,2}", 0),
    ("E240", "pattern p { match a where foo(x) > 1 }", "foo", 0),
    ("E240", "pattern p { match a where eval(x) > 1 }", "eval", 0),
    ("E241", "pattern p { match a where abs(x, y) > 1 }", "abs", 0),
    ("E241", "pattern p { match a where distance_km(1, 2, 3) > 1 }", "distance_km", 0),
    ("E241", "pattern p { match a+ emit { m = max(a.x, a.y) } }", "max", 0),
    ("E242", "pattern p { match a where round(x, n=2) > 1 }", "round", 0),
    ("E243", "pattern p { match a+ then b where count(a.x) > 1 }", "a.x", 0),
    ("E243", "pattern p { match a emit { n = count(zz) } }", "zz", 0),
    ("E244", "pattern p { match a+ then b+ emit { s = sum(a.x * b.y) } }", "a.x * b.y", 0),
    ("E244", "pattern p { match a+ emit { s = sum(amount) } }", "amount", 0),
    ("E244", "pattern p { match a+ emit { s = sum(1) } }", "1)", 0),
    ("E244", "pattern p { match a+ emit { s = sum(a) } }", "a)", 0),
    ("E245", "pattern p { match a emit { f = first(a) } }", "first", 0),
    ("E245", "pattern p { match a emit { f = abs(a.x).y } }", "abs", 0),
    ("E246", "pattern p { match a+ emit { s = sum(count(a)) } }", "count", 0),
    ("E250", "pattern p { match a+ then b where x > a.x }", "a.x", 0),
    ("E250", "pattern p { match (a then b)+ then c where a.x > 1 }", "a.x", 0),
    ("E250", "pattern p { match a{2} emit { x = a.x } }", "a.x", 0),
    ("E250", "pattern p { match a+ where a.x > 1 }", "a.x", 0),
    ("E251", "pattern p { match a where x > b.x then b }", "b.x", 0),
    ("E251", "pattern p { match a+ where count(b) > 1 then b }", "count", 0),
    ("E252", "pattern p { match a where a.x > 1 }", "a.x", 0),
    ("E252", "pattern p { match a where count(a) > 1 }", "count", 0),
    ("E253", "pattern p { within 1m match a then not b then c where b.x > 1 }", "b.x", 0),
    ("E253", "pattern p { within 1m match a then not b then c emit { n = count(b) } }",
     "count", 0),
    ("E260", "pattern p { let r = 1 let r = 2 match a }", "let r", 1),
    ("E261", "pattern p { let a = 1 match a }", "let a", 0),
    ("E262", "pattern p { let r = a.x match a }", "a.x", 0),
    ("E262", "pattern p { let r = count(a) match a }", "count", 0),
    ("E263", "pattern p { let r = q let q = 1 match a }", "q let", 0),
    ("E263", "pattern p { let r = r + 1 match a }", "r +", 0),
    ("E264", "pattern p { let ts = 1 match a }", "let", 0),
    ("E270", "pattern p { let r = score(1, f=x, g=y) match a }", "1,", 0),
    ("E270", "pattern p { let r = score() match a }", "score", 0),
    ("E272", "pattern p { match a where score(m, f=x, g=y) > 1 }", "score", 0),
    ("E272", "pattern p { match a+ until score(m, f=x, g=y) > 1 }", "score", 0),
    ("E273", "pattern p { let r = score(mm, f=x) match a }", "mm", 0),
    ("E274", "pattern p { let r = score(m, f=x, g=y, h=z) match a }", "z)", 0),
    ("E275", "pattern p { let r = score(m, f=x) match a }", "score", 0),
    ("E276", "pattern p { let r = score(m, x, f=1, g=2) match a }", "x,", 0),
    ("E277", "pattern p { let r = score(m, f=1, g=2, f=3) match a }", "3)", 0),
    ("E278", "pattern p { match a+ emit { s = max(score(m, f=a.x, g=1)) } }", "score", 0),
    ("E280", "pattern p { match a where x matches y }", "y }", 0),
    ("E281", 'pattern p { match a where x matches "(a" }', '"(a"', 0),
    ("E281", 'pattern p { match a where x matches "(a)\\\\1" }', '"(a)', 0),
    ("E282", "pattern p { match a where x in 5 }", "5", 0),
    ("E291", "pattern p { match a emit { m = a.x, m = a.y } }", "m = a.y", 0),
    ("E294", "pattern p { match a emit { m = amount } }", "amount", 0),
    ("E294", "pattern p { let r = 1 match a emit { m = r } }", "r }", 0),
    ("E295", "pattern p { match a where exists(1) }", "1)", 0),
    ("E296", "pattern p { match a emit { m = a } }", "a }", 0),
    ("W290", "pattern p { match a emit { k = key } }", "key }", 0),
]


@pytest.mark.parametrize(("code", "source", "marker", "nth"), RULES)
def test_rule(code: str, source: str, marker: str, nth: int) -> None:
    found = [d for d in diags(source) if d.code == code]
    assert found, [d.format() for d in diags(source)]
    d = found[0]
    assert (d.line, d.column) == where(source, marker, nth), d.format()
    assert d.severity == ("warning" if code.startswith("W") else "error")
    assert d.hint and d.snippet and d.file == "c.cep"
    assert d.snippet.split("\n")[1].index("^") == d.snippet.split("\n")[0].index("|") + 2 + (
        d.column - 1)


def test_stage_name_with_colon() -> None:
    span = Span(1, 1, 1, 4, 0, 3)
    pf = PatternFile((Pattern("p", Sequence((Step(None, Stage("a:b", name_span=span)),))),))
    assert [d.code for d in check(pf)] == ["E202"]


def test_every_problem_is_reported() -> None:
    source = """pattern p {
      let r = c.x
      match
        not a then b+ greedy combinations then c? where foo(1) > 0
      emit { m = b.x, m = key }
    }"""
    codes = {d.code for d in diags(source)}
    assert {"E262", "E211", "E222", "E225", "E240", "E250", "E291", "W290"} <= codes


def test_results_are_in_source_order() -> None:
    found = diags("pattern p { match a where b.x > foo(1) then b emit { z = zz } }")
    assert [(d.line, d.column) for d in found] == sorted((d.line, d.column) for d in found)


ALLOWED = [
    # aggregates and first/last over earlier and own looping stages
    "pattern p { key k match a+ where sum(a.x) < 30 and last(a).x < x "
    "then b where b2 > first(a).x + count(a) emit { n = count(a), l = last(a).x } }",
    # measures read every positive stage; optional stages are readable
    "pattern p { key k within 1m match a then b? then c "
    "emit { x = a.x, y = b.y, z = c.z, w = key } }",
    # `when` may read measures; score in let, emit and when
    "pattern p { key k let r = score(m, f=x, g=y) let q = r * 2 match a+ where r > 0.5 and q > 1 "
    "emit when total > 1 and score(m, f=total, g=1) > 0 { total = sum(a.x), s = score(m, f=1, "
    "g=last(a).x) } }",
    # in / not in with a field, matches with a valid regex, exists on fields
    'pattern p { match a where x in tags and y not in ["a"] and s matches "^\\\\d+$" and '
    "exists(geo.country) and not exists(a2) }",
    # trailing `then not` with a stage window, `next not` at the end needs none
    "pattern p { match a then not b within 5m }",
    "pattern p { match a next not b }",
    # greedy on times, until on loops and on looping groups, windows within the pattern's
    "pattern p { within 1h match a{2,3} greedy then b+ consecutive until x then (c then d)+ "
    "until y within 10m then e within 1h }",
    # skip targets, group modifiers, single-event quantifier {1}
    "pattern p { skip to last d match a then (b then c){2} combinations then d{1} where x > 0 "
    "emit { v = d.x } }",
    # a condition of a not stage reads earlier stages; on timeout emit reads stages
    "pattern p { key k within 1m match a then not b where b2 == a.id on timeout emit { x = a.x } }",
    # a measure named like a stage is fine in `when`
    "pattern p { match a emit when a > 1 { a = a.x } }",
]


@pytest.mark.parametrize("source", ALLOWED)
def test_allowed(source: str) -> None:
    assert [d.format() for d in diags(source)] == []


def test_models_are_optional() -> None:
    assert check(parse("pattern p { let r = score(unknown, z=1) match a }")) == []


def test_function_tables_cover_every_function() -> None:
    assert set(ARITY) == (AGGREGATES | SCALAR_FUNCTIONS) - {"score"}
    assert len(PATTERN_RULES) >= 15


def test_every_code_is_documented() -> None:
    import re
    from pathlib import Path

    from cep.dsl.codes import CODES

    src = Path(__file__).resolve().parents[2] / "cep" / "dsl"
    used = {
        code
        for path in src.glob("*.py") if path.name != "codes.py"
        for code in re.findall(r'"([EW]\d{3})"', path.read_text("utf-8"))
    }
    assert used == set(CODES)
