"""`greedy` and `until` (docs/flink-semantics.md §2, §4, §5, §12 greedy vs reluctant)."""

from __future__ import annotations

import pytest
from helpers import events_from, matches, named, pattern, run_pattern

C, D, B = named("c"), named("d"), named("b")


def test_docs_greedy_loop_forbids_exiting_early() -> None:
    # §4: `c a* d` (greedy) over `c x a1 x a2 x a3 d` yields only {c a1 a2 a3 d}
    text = pattern(f"{C} then {named('a', '* greedy')} then {D}", "skip none")
    assert matches(text, "c1 x1 a1 x2 a2 x3 a3 d1") == ["c1 a1 a2 a3 d1"]


def test_non_greedy_loop_lets_shorter_prefixes_skip_later_loop_events() -> None:
    # §2 / §13.1: a branch that left the loop waits for d under `then` and may step
    # over later a's
    text = pattern(f"{C} then {named('a', '*')} then {D}", "skip none")
    assert sorted(matches(text, "c1 x1 a1 x2 a2 x3 a3 d1")) == sorted(
        ["c1 d1", "c1 a1 d1", "c1 a1 a2 d1", "c1 a1 a2 a3 d1"]
    )


def test_docs_relaxed_skipping_after_a_loop_exit() -> None:
    # §2: `c a* b` yields {c a1 a2 b}, {c a1 b} and {c b} as well as the full loop
    text = pattern(f"{C} then {named('a', '*')} then {B}", "skip none")
    assert sorted(matches(text, "c1 a1 a2 a3 b1")) == sorted(
        ["c1 b1", "c1 a1 b1", "c1 a1 a2 b1", "c1 a1 a2 a3 b1"]
    )


def test_docs_until_over_a1_c_a2_b_a3() -> None:
    # §5: `(a+ until b)` over `a1 c a2 b a3` gives {a1 a2}, {a1}, {a2}, {a3}
    text = pattern(named("a", "+", after='until name == "b"'), "skip none")
    assert matches(text, "a1 c1 a2 b1 a3") == ["a1", "a1 a2", "a2", "a3"]


UNTIL_EVENTS = "c1:price=1 a1:price=2 a2:price=3 a3:price=5 a4:price=6"


def test_until_event_is_never_in_the_loop_but_may_be_taken_by_the_next_stage() -> None:
    # UntilConditionITCase.testUntilConditionFollowedByOneOrMore: a3 (price 5) ends
    # the loop and is taken by `e`; a4 after it can no longer extend the loop
    text = pattern(
        f"{C} then {named('a', '+', after='until price == 5')} then e where price == 5",
        "skip none",
    )
    assert sorted(matches(text, UNTIL_EVENTS)) == ["c1 a1 a2 a3", "c1 a1 a3"]


def test_until_with_combinations() -> None:
    # UntilConditionITCase.testUntilConditionFollowedByOneOrMoreCombinations
    text = pattern(
        f"{C} then {named('a', '+ combinations', after='until price == 5')} "
        "then e where price == 5",
        "skip none",
    )
    spec = "c1:price=1 a1:price=2 a2:price=3 a3:price=4 a4:price=5 a5:price=6"
    assert sorted(matches(text, spec)) == sorted(
        ["c1 a1 a2 a3 a4", "c1 a1 a2 a4", "c1 a1 a3 a4", "c1 a1 a4"]
    )


def test_until_does_not_stop_a_branch_still_waiting_for_the_first_element() -> None:
    # §5 / testUntilConditionFollowedByAnyOneOrMore: the `then any` entry survives the
    # until-event, hence {c a4}
    text = pattern(f"{C} then any {named('a', '+', after='until price == 5')}", "skip none")
    assert sorted(matches(text, UNTIL_EVENTS)) == sorted(
        ["c1 a1", "c1 a1 a2", "c1 a2", "c1 a4"]
    )


def test_until_ends_loops_but_not_branches_that_already_left_them() -> None:
    loop = named("a", "+", after='until name == "x"')
    text = pattern(f"{loop} then {B}", "skip none")
    # {a1} left the loop before x1 and still takes b1; {a1 a2} cannot exist
    assert sorted(matches(text, "a1 x1 a2 b1")) == ["a1 b1", "a2 b1"]


def test_greedy_with_until_the_until_event_reaches_an_unmasked_next_stage() -> None:
    # §4: with `until`, the until-event exits to a non-greedy copy of the next stage;
    # a3 satisfies the loop's `where` (so greedy masking alone would hide it from `e`)
    text = pattern(
        f"{C} then {named('a', '+ greedy', after='until price == 5')} then e where price == 5",
        "skip none",
    )
    assert matches(text, "c1:price=1 a1:price=2 a2:price=3 a3:price=5") == ["c1 a1 a2 a3"]


# MATCH_RECOGNIZE docs, "Greedy & Reluctant Quantifiers": PATTERN (A B* C),
# A AS price > 10, B AS price < 15, C AS price > 12, AFTER MATCH SKIP PAST LAST ROW.
# SQL concatenation is strict and quantifiers are consecutive; B* is greedy by default.
TICKER = "r1:price=10 r2:price=11 r3:price=12 r4:price=13 r5:price=14 r6:price=16"


@pytest.mark.parametrize(
    ("b_modifiers", "last_prices"),
    [
        ("* consecutive greedy", [16]),  # B* swallows 12, 13 and 14
        ("* consecutive", [13, 16]),  # B*? takes only 12
    ],
)
def test_docs_greedy_vs_reluctant(b_modifiers: str, last_prices: list[int]) -> None:
    text = pattern(
        f"a where price > 10 next b{b_modifiers} where price < 15 next c where price > 12",
        "skip past last",
        "emit { last_price = c.price }",
    )
    alerts = run_pattern(text, events_from(TICKER))
    assert [a.record["measures"]["last_price"] for a in alerts] == last_prices
