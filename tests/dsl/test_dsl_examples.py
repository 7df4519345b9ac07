"""Every example of the pattern language reference parses, checks clean, and means
exactly what the reference says; `patterns/` holds a copy of each."""

from __future__ import annotations

import re
from pathlib import Path

from cep.dsl import check, load_file, load_paths, parse
from cep.dsl.ast import (
    Binary,
    BoolOp,
    Call,
    Compare,
    Emit,
    Let,
    ListLit,
    Literal,
    Measure,
    Pattern,
    Quantifier,
    Ref,
    Sequence,
    Skip,
    Stage,
    Step,
)

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = ROOT / "patterns"
DOC = ROOT / "docs" / "language.md"  # the language reference, owned by the repo
MODELS = {"txn_risk": ["amount", "hour", "foreign"]}

_FENCE = re.compile(r"```cep\n(.*?)```", re.S)
_PATTERN_HEAD = re.compile(r"^\s*pattern\s+\w+\s*\{", re.M)


def doc_examples() -> list[str]:
    text = DOC.read_text("utf-8")
    return [b for b in _FENCE.findall(text) if _PATTERN_HEAD.search(b)]


def by_name(patterns: tuple[Pattern, ...]) -> dict[str, Pattern]:
    return {p.name: p for p in patterns}


EXPECTED_NAMES = {
    "card_testing", "unpaid_order", "impossible_travel", "account_takeover",
    "decline_burst", "risky_burst", "abandoned_checkout",
}


def test_every_doc_example_parses_and_checks_clean() -> None:
    examples = doc_examples()
    assert len(examples) >= 2
    names: set[str] = set()
    for source in examples:
        pf = parse(source)
        assert check(pf, models=MODELS) == []
        names |= {p.name for p in pf.patterns}
    assert names >= EXPECTED_NAMES


def test_patterns_dir_holds_the_doc_examples() -> None:
    from_doc = {p.name: p for src in doc_examples() for p in parse(src).patterns}
    for name in EXPECTED_NAMES:
        pattern = from_doc[name]
        (copy,) = parse((PATTERNS / f"{name}.cep").read_text("utf-8")).patterns
        assert copy == pattern, name


def test_patterns_dir_loads_clean() -> None:
    patterns = load_paths([PATTERNS], models=MODELS)
    assert {p.name for p in patterns} >= EXPECTED_NAMES
    for p in patterns:
        assert p.file is not None and p.file.endswith(f"{p.name}.cep")
        assert p.source.startswith(f"pattern {p.name}") and p.source.endswith("}")


def _load(name: str) -> Pattern:
    (p,) = load_file(PATTERNS / f"{name}.cep", models=MODELS)
    return p


def test_card_testing_means_what_the_doc_says() -> None:
    p = _load("card_testing")
    tiny_where = BoolOp(
        "and",
        Compare("==", Ref(("type",)), Literal("purchase")),
        Compare("<", Ref(("amount",)), Literal(2.0)),
    )
    big_where = BoolOp(
        "and",
        Compare("==", Ref(("type",)), Literal("purchase")),
        Compare(">", Ref(("amount",)),
                Binary("*", Literal(50), Call("avg", (Ref(("tiny", "amount")),)))),
    )
    expected = Pattern(
        name="card_testing",
        description="Several tiny purchases, then a large one on the same card",
        streams=("transactions",),
        key=(("card_id",),),
        within_ms=600_000,
        skip=Skip("past_last"),
        sequence=Sequence((
            Step(None, Stage("tiny", quantifier=Quantifier(3, None), where=tiny_where)),
            Step("then", Stage("big", where=big_where)),
        )),
        emit=Emit(
            topic="fraud.alerts",
            severity="high",
            measures=(
                Measure("card", Ref(("key",))),
                Measure("attempts", Call("count", (Ref(("tiny",)),))),
                Measure("amount", Ref(("big", "amount"))),
                Measure("merchant", Ref(("big", "merchant"))),
            ),
        ),
    )
    assert p == expected
    tiny = p.sequence.steps[0].element
    assert isinstance(tiny, Stage)
    parsed_where = tiny.where
    assert isinstance(parsed_where, BoolOp) and isinstance(parsed_where.right, Compare)
    two = parsed_where.right.right
    assert isinstance(two, Literal) and type(two.value) is float
    # spans point at the source
    stage = p.sequence.steps[1].element
    assert isinstance(stage, Stage)
    assert (stage.name_span.line, stage.name_span.column) == (11, 10)


def test_unpaid_order_has_a_windowed_trailing_not() -> None:
    p = _load("unpaid_order")
    created, paid = (s.element for s in p.sequence.steps)
    assert p.sequence.steps[1].connector == "then"
    assert isinstance(paid, Stage) and paid.negated and paid.name == "paid"
    assert paid.within_ms == 15 * 60_000  # the stage's within, not the pattern's
    assert p.within_ms is None
    assert paid.where == Compare("==", Ref(("type",)), Literal("payment_received"))
    assert p.emit == Emit(severity="medium", measures=(
        Measure("order", Ref(("key",))), Measure("amount", Ref(("created", "amount"))),
    ))
    assert isinstance(created, Stage) and not created.negated


def test_impossible_travel_arithmetic_and_durations() -> None:
    p = _load("impossible_travel")
    b = p.sequence.steps[1].element
    assert isinstance(b, Stage) and b.where is not None
    speed = b.where
    assert isinstance(speed, BoolOp) and speed.op == "and"
    cmp = speed.right
    assert isinstance(cmp, Compare) and cmp.op == ">" and cmp.right == Literal(900)
    km = Call("distance_km", (Ref(("a", "lat")), Ref(("a", "lon")), Ref(("lat",)), Ref(("lon",))))
    hours = Binary("+", Binary("/", Binary("-", Ref(("ts",)), Ref(("a", "ts"))),
                              Literal(3_600_000, is_duration=True)), Literal(0.01))
    assert cmp.left == Binary("/", km, hours)
    assert p.emit is not None and [m.name for m in p.emit.measures] == [
        "card", "from_country", "to_country", "km"]


def test_account_takeover_streams_and_in_list() -> None:
    p = _load("account_takeover")
    assert p.streams == ("logins", "account_events", "transactions")
    change = p.sequence.steps[1].element
    assert isinstance(change, Stage)
    assert change.where == Compare(
        "in", Ref(("type",)), ListLit((Literal("password_change"), Literal("email_change"))))
    assert [s.connector for s in p.sequence.steps] == [None, "then", "then"]


def test_decline_burst_measures_across_lines() -> None:
    p = _load("decline_burst")
    (step,) = p.sequence.steps
    assert isinstance(step.element, Stage) and step.element.quantifier == Quantifier(5, None)
    assert p.emit is not None and p.emit.measures[2] == Measure(
        "merchants", Call("distinct_count", (Ref(("declined", "merchant")),)))


def test_risky_burst_let_score_and_when() -> None:
    p = _load("risky_burst")
    assert p.lets == (Let("risk", Call("score", (Ref(("txn_risk",)),), (
        ("amount", Ref(("amount",))),
        ("hour", Call("hour", (Ref(("ts",)),))),
        ("foreign", Compare("!=", Ref(("country",)), Ref(("home_country",)))),
    ))),)
    assert p.emit is not None
    assert p.emit.when == Compare(">", Ref(("total",)), Literal(500))
    assert p.emit.severity == "high"


def test_abandoned_checkout_timeout_emit() -> None:
    p = _load("abandoned_checkout")
    assert p.emit is None
    assert p.timeout_emit == Emit(severity="low", measures=(
        Measure("session", Ref(("key",))),
        Measure("reached_checkout", Call("exists", (Ref(("checkout", "ts")),))),
    ))
