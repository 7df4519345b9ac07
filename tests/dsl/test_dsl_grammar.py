"""The grammar and the tree -> AST transform: every construct, precedence, spans."""

from __future__ import annotations

import pytest

from cep.dsl import parse
from cep.dsl.ast import (
    Binary,
    BoolOp,
    Call,
    Compare,
    Expr,
    Group,
    ListLit,
    Literal,
    Member,
    Pattern,
    Quantifier,
    Ref,
    Skip,
    Stage,
    Unary,
)


def one(source: str) -> Pattern:
    (p,) = parse(source).patterns
    return p


def cond(expr: str) -> Expr:
    stage = one(f"pattern p {{ match a where {expr} }}").sequence.steps[0].element
    assert isinstance(stage, Stage) and stage.where is not None
    return stage.where


def stage_of(text: str) -> Stage:
    el = one(f"pattern p {{ match {text} }}").sequence.steps[0].element
    assert isinstance(el, Stage)
    return el


# ---------------------------------------------------------------- header


def test_header_clauses_in_any_order() -> None:
    p = one("""
        pattern p {
          skip to last b
          order by seq, sub.id
          time event.time
          let x = 1
          within 2h
          key card_id, geo.country
          from a, "topic-b"
          description 'd'
          let y = x + 1
          match a then b
        }""")
    assert p.skip == Skip("to_last", "b")
    assert p.order_by == (("seq",), ("sub", "id"))
    assert p.time_field == ("event", "time") and not p.time_arrival
    assert p.within_ms == 7_200_000
    assert p.key == (("card_id",), ("geo", "country"))
    assert p.streams == ("a", "topic-b")
    assert p.description == "d"
    assert [let.name for let in p.lets] == ["x", "y"]
    assert [k for k, _ in p.clause_spans] == [
        "skip", "order by", "time", "let", "within", "key", "from", "description", "let",
        "match",
    ]


def test_defaults() -> None:
    p = one("pattern p { match a }")
    assert p.skip == Skip("past_last") and p.streams is None and p.key == ()
    assert p.emit is None and p.timeout_emit is None and p.within_ms is None


@pytest.mark.parametrize(("text", "skip"), [
    ("skip past last", Skip("past_last")),
    ("skip to next", Skip("to_next")),
    ("skip to first a", Skip("to_first", "a")),
    ("skip to last a", Skip("to_last", "a")),
    ("skip none", Skip("none")),
])
def test_skip(text: str, skip: Skip) -> None:
    assert one(f"pattern p {{ {text} match a }}").skip == skip


def test_time_arrival() -> None:
    p = one("pattern p { time arrival match a }")
    assert p.time_arrival and p.time_field is None


@pytest.mark.parametrize(("text", "ms"), [
    ("250ms", 250), ("30s", 30_000), ("10m", 600_000), ("2h", 7_200_000), ("7d", 604_800_000),
])
def test_durations(text: str, ms: int) -> None:
    assert one(f"pattern p {{ within {text} match a }}").within_ms == ms
    assert cond(f"x < {text}") == Compare("<", Ref(("x",)), Literal(ms, is_duration=True))
    lit = cond(f"x < {text}")
    assert isinstance(lit, Compare) and isinstance(lit.right, Literal) and lit.right.is_duration


# ---------------------------------------------------------------- stages and quantifiers


@pytest.mark.parametrize(("text", "quantifier", "optional"), [
    ("x", None, False),
    ("x?", None, True),
    ("x+", Quantifier(1, None), False),
    ("x+?", Quantifier(1, None), True),
    ("x*", Quantifier(1, None), True),
    ("x{3}", Quantifier(3, 3), False),
    ("x{2,4}", Quantifier(2, 4), False),
    ("x{2,4}?", Quantifier(2, 4), True),
    ("x{2,}", Quantifier(2, None), False),
    ("x{ 2 , }?", Quantifier(2, None), True),
    ("x{,3}", Quantifier(1, 3), True),
    ("x{0,3}", Quantifier(1, 3), True),
    ("x{0,}", Quantifier(1, None), True),
    ("x{0}", Quantifier(0, 0), False),
])
def test_quantifiers(text: str, quantifier: Quantifier | None, optional: bool) -> None:
    st = stage_of(text)
    assert (st.quantifier, st.optional) == (quantifier, optional)


def test_stage_with_everything() -> None:
    st = stage_of("x{2,} greedy consecutive where a > 1 until b within 5s")
    assert st.greedy and st.consecutive and not st.combinations
    assert st.where == Compare(">", Ref(("a",)), Literal(1))
    assert st.until == Ref(("b",))
    assert st.within_ms == 5000


def test_connectors_and_not_stages() -> None:
    p = one("pattern p { within 1h match a next b then c then any d next not e then not f }")
    assert [s.connector for s in p.sequence.steps] == [
        None, "next", "then", "then any", "next", "then"]
    negated = [s.element.negated for s in p.sequence.steps if isinstance(s.element, Stage)]
    assert negated == [False, False, False, False, True, True]


def test_groups_nest() -> None:
    p = one("pattern p { match d then (a then (b next c)* ){2,3}? combinations until z "
            "within 1m then e }")
    group = p.sequence.steps[1].element
    assert isinstance(group, Group)
    assert group.quantifier == Quantifier(2, 3) and group.optional and group.combinations
    assert group.until == Ref(("z",)) and group.within_ms == 60_000
    inner = group.body.steps[1].element
    assert isinstance(inner, Group) and inner.quantifier == Quantifier(1, None) and inner.optional
    assert [s.connector for s in inner.body.steps] == [None, "next"]


def test_stage_within_belongs_to_the_stage() -> None:
    p = one("pattern p { within 1h match a where x > 1 within 10s then b within 20s }")
    a, b = (s.element for s in p.sequence.steps)
    assert isinstance(a, Stage) and isinstance(b, Stage)
    assert (p.within_ms, a.within_ms, b.within_ms) == (3_600_000, 10_000, 20_000)


# ---------------------------------------------------------------- emit


def test_emit_forms() -> None:
    p = one("""pattern p { match a
        emit to "t.x" severity critical when n > 1 { n = count(a), m = 2
          k = 3, }
        on timeout emit severity low }""")
    assert p.emit is not None and p.emit.topic == "t.x" and p.emit.severity == "critical"
    assert p.emit.when == Compare(">", Ref(("n",)), Literal(1))
    assert [m.name for m in p.emit.measures] == ["n", "m", "k"]
    assert p.timeout_emit is not None and p.timeout_emit.measures == ()
    assert p.timeout_emit.severity == "low"


def test_keywords_stay_usable_as_names() -> None:
    p = one("""pattern p { let time = key match a where type == "x" and from > 1
        emit { card = key time = a.time key = a.key within = 1 match = a.order } }""")
    assert p.emit is not None
    assert [m.name for m in p.emit.measures] == ["card", "time", "key", "within", "match"]
    assert p.lets[0].name == "time"


# ---------------------------------------------------------------- expressions


@pytest.mark.parametrize(("text", "expected"), [
    ("a or b and c", BoolOp("or", Ref(("a",)), BoolOp("and", Ref(("b",)), Ref(("c",))))),
    ("a and b or c", BoolOp("or", BoolOp("and", Ref(("a",)), Ref(("b",))), Ref(("c",)))),
    ("not a == 1 and b", BoolOp("and", Unary("not", Compare("==", Ref(("a",)), Literal(1))),
                                Ref(("b",)))),
    ("a + b * c > 1", Compare(">", Binary("+", Ref(("a",)), Binary("*", Ref(("b",)), Ref(("c",)))),
                              Literal(1))),
    ("a - b - c", Binary("-", Binary("-", Ref(("a",)), Ref(("b",))), Ref(("c",)))),
    ("a / b % c", Binary("%", Binary("/", Ref(("a",)), Ref(("b",))), Ref(("c",)))),
    ("-a * b", Binary("*", Unary("-", Ref(("a",))), Ref(("b",)))),
    ("-(a + 1)", Unary("-", Binary("+", Ref(("a",)), Literal(1)))),
    ("x > -5", Compare(">", Ref(("x",)), Literal(-5))),
    ("x > -2.5", Compare(">", Ref(("x",)), Literal(-2.5))),
    ("(a or b) and c", BoolOp("and", BoolOp("or", Ref(("a",)), Ref(("b",))), Ref(("c",)))),
    ("x not in [1, 2,]", Compare("not in", Ref(("x",)), ListLit((Literal(1), Literal(2))))),
    ("not x in []", Unary("not", Compare("in", Ref(("x",)), ListLit(())))),
    ("s matches \"^a\"", Compare("matches", Ref(("s",)), Literal("^a"))),
    ("s contains 'b'", Compare("contains", Ref(("s",)), Literal("b"))),
    ("s starts with 'c'", Compare("starts with", Ref(("s",)), Literal("c"))),
    ("s ends with 'd'", Compare("ends with", Ref(("s",)), Literal("d"))),
    ("x != null", Compare("!=", Ref(("x",)), Literal(None))),
    ("x == true or y == false", BoolOp("or", Compare("==", Ref(("x",)), Literal(True)),
                                       Compare("==", Ref(("y",)), Literal(False)))),
    ("geo.country == 'FR'", Compare("==", Ref(("geo", "country")), Literal("FR"))),
    ("first(s).a.b > 1", Compare(">", Member(Call("first", (Ref(("s",)),)), ("a", "b")),
                                 Literal(1))),
    ("if(a, 1, 2.5e3) <= coalesce(b, c)", Compare(
        "<=", Call("if", (Ref(("a",)), Literal(1), Literal(2500.0))),
        Call("coalesce", (Ref(("b",)), Ref(("c",)))))),
    ("score(m, f=x + 1, g=y) > 0", Compare(">", Call(
        "score", (Ref(("m",)),), (("f", Binary("+", Ref(("x",)), Literal(1))), ("g", Ref(("y",))))),
        Literal(0))),
])
def test_expressions(text: str, expected: Expr) -> None:
    assert cond(text) == expected


def test_comparisons_do_not_chain() -> None:
    from cep.errors import PatternError

    with pytest.raises(PatternError):
        cond("a < b < c")


@pytest.mark.parametrize(("text", "value"), [
    (r'"a\"b"', 'a"b'),
    (r"'it\'s'", "it's"),
    (r'"tab\there\nnl"', "tab\there\nnl"),
    (r'"back\\slash"', "back\\slash"),
    (r'"\u00e9\x41\U0001F600"', "\u00e9A\U0001f600"),
    (r'"\d+\.\w"', r"\d+\.\w"),
    (r'"__import__(\'os\')"', "__import__('os')"),
    ('"__import__(\'os\').system(\'rm -rf /\')"', "__import__('os').system('rm -rf /')"),
    (r'"\u0000"', "\x00"),
    (r'"{0.__class__}"', "{0.__class__}"),
    ('""', ""),
    ("'\"'", '"'),
    ('"#not a comment"', "#not a comment"),
])
def test_strings_decode_without_eval(text: str, value: str) -> None:
    expr = cond(f"x == {text}")
    assert isinstance(expr, Compare)
    assert isinstance(expr.right, Literal)
    assert type(expr.right.value) is str and expr.right.value == value


def test_numbers() -> None:
    for text, value in [("0", 0), ("42", 42), ("2.00", 2.0), ("1e3", 1000.0), ("1.5E-2", 0.015)]:
        expr = cond(f"x == {text}")
        assert isinstance(expr, Compare) and isinstance(expr.right, Literal)
        assert expr.right.value == value and type(expr.right.value) is type(value)


def test_spans_are_one_based_with_offsets() -> None:
    source = "pattern p {\n  match\n    big where amount > 5\n}"
    p = one(source)
    st = p.sequence.steps[0].element
    assert isinstance(st, Stage) and st.where is not None
    assert (st.name_span.line, st.name_span.column) == (3, 5)
    w = st.where.span
    assert (w.line, w.column, w.end_line, w.end_column) == (3, 15, 3, 25)
    assert source[w.start:w.end] == "amount > 5"
    assert p.source == source and (p.span.line, p.span.end_line) == (1, 4)


def test_several_patterns_and_comments() -> None:
    pf = parse("# head\npattern a { match x } # tail\n\npattern b {\n match y # c\n}\n",
               "f.cep")
    assert [p.name for p in pf.patterns] == ["a", "b"]
    assert pf.patterns[1].source == "pattern b {\n match y # c\n}"
    assert pf.file == "f.cep" and pf.patterns[0].file == "f.cep"


def test_byte_order_mark_and_crlf() -> None:
    pf = parse("\ufeffpattern a {\r\n match x\r\n}\r\n")
    assert pf.patterns[0].name == "a"
