"""Negation: `next not` (notNext) and `then not` (notFollowedBy), in the middle and at
the end; Stop states discard every successor (docs/flink-semantics.md §0.3, §6, §13.3-4).

Cases marked with a Flink test name are NotPatternITCase / GroupITCase cases.
"""

from __future__ import annotations

import pytest
from helpers import (
    WITH_TIMEOUTS,
    events_from,
    matches,
    matches_at,
    named,
    pattern,
    run_pattern,
)

A, B, C, D = named("a"), named("b"), named("c"), named("d")
NOT_B = 'not nb where name == "b"'
NOT_C = 'not nc where name == "c"'


# -------------------------------------------------------------- `next not` (notNext)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a1 x1 c1", ["a1 c1"]),
        ("a1 b1 c1", []),
        # the event after a1 is checked, then may itself be taken by the next stage
        ("a1 c1", ["a1 c1"]),
        # only the single event right after a1 matters
        ("a1 x1 b1 c1", ["a1 c1"]),
    ],
)
def test_next_not_in_the_middle_is_a_one_event_look_ahead(
    spec: str, expected: list[str]
) -> None:
    assert matches(pattern(f"{A} next {NOT_B} then {C}", "skip none"), spec) == expected


def test_flink_not_next() -> None:
    # testNotNext: a notNext(b) followedByAny c followedBy d
    text = pattern(f"{A} next {NOT_B} then any {C} then {D}", "skip none")
    assert sorted(matches(text, "a1 c1 b1 c2 d1")) == ["a1 c1 d1", "a1 c2 d1"]
    # testNotNextNoMatches
    text = pattern(f"{A} next {NOT_B} then {C} then {D}", "skip none")
    assert matches(text, "a1 b1 c1 c2 d1") == []


def test_next_not_at_the_end_waits_for_the_next_event() -> None:
    text = pattern(f"{A} next {NOT_B}", "skip none")
    # emitted when x1 arrives (at x1's time); x1 is not part of the match
    assert matches_at(text, "a1@10 x1@20") == [("a1", 20)]
    assert matches(text, "a1 b1") == []
    # no following event, no match, even at the end of input
    assert matches(text, "a1") == []


def test_flink_not_next_at_the_end_no_matches() -> None:
    # testNotNextNoMatchesAtTheEnd
    text = pattern(f"{A} then any {C} then any {D} next {NOT_B}", "skip none")
    assert matches(text, "a1 c1 c2 d1 b1") == []


def test_stop_state_discards_every_successor_including_ignore_branches() -> None:
    # §13.3, testNotNextAfterOneOrMoreSkipTillNext: the relaxed loop would IGNORE c1,
    # but c1 right after b1 hits the Stop state, which discards that branch too
    text = pattern(f"{A} then {named('b', '+')} next {NOT_C} then {D}", "skip none")
    assert matches(text, "a1 b1 c1 b2 d1") == []


def test_stop_state_with_then_any_entry() -> None:
    # testNotNextAfterOneOrMoreSkipTillAny: the `then any` entry never took b1, so it
    # is not discarded and takes b2
    text = pattern(f"{A} then any {named('b', '+')} next {NOT_C} then {D}", "skip none")
    assert matches(text, "a1 b1 c1 b2 d1") == ["a1 b2 d1"]


# -------------------------------------------------------------- `then not` (notFollowedBy)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a1 x1 c1", ["a1 c1"]),
        ("a1 x1 b1 c1", []),
        # events after the next stage has taken are irrelevant
        ("a1 c1 b1", ["a1 c1"]),
    ],
)
def test_then_not_in_the_middle(spec: str, expected: list[str]) -> None:
    assert matches(pattern(f"{A} then {NOT_B} then {C}", "skip none"), spec) == expected


def test_then_not_kills_even_when_the_event_would_satisfy_the_next_stage() -> None:
    # §6: c1 satisfies both `big` and `c`: the Stop state discards the branch that
    # took c1 and the one waiting for c, so c2 cannot complete it either
    text = pattern(f"{A} then not big where price > 5 then {C} then {D}", "skip none")
    assert matches(text, "a1 c1:price=9 c2:price=1 d1") == []
    assert matches(text, "a1 c1:price=1 d1") == ["a1 c1 d1"]


def test_then_not_does_not_discard_a_match_completed_by_the_same_event() -> None:
    # NFA.doProcess puts Final successors into the potential matches before it looks
    # at Stop successors: when the next stage is the last one, the match completed by
    # c1 is emitted even though c1 also satisfies the negated stage
    text = pattern(f"{A} then not big where price > 5 then {C}", "skip none")
    assert matches(text, "a1 c1:price=9 c2:price=1") == ["a1 c1"]


def test_flink_not_followed_by() -> None:
    # testNotFollowedBy: a notFollowedBy(b) followedByAny c followedBy d
    text = pattern(f"{A} then {NOT_B} then any {C} then {D}", "skip none")
    assert matches(text, "a1 c1 b1 c2 d1") == ["a1 c1 d1"]


def test_flink_not_followed_by_with_branching_at_start() -> None:
    text = pattern(f"{A} then {NOT_B} then {C} then {D}", "skip none")
    assert matches(text, "a1 b1 c1 a2 c2 d1") == ["a2 c2 d1"]


def test_flink_not_followed_by_before_optional() -> None:
    # testNotFollowedByBeforeOptional: the check extends through the optional c, but
    # only on branches that skip it
    text = pattern(f"{A} then {NOT_B} then any {named('c', '?')} then {D}", "skip none")
    assert matches(text, "a1 c1 b1 c2 d1") == ["a1 c1 d1"]


def test_flink_not_followed_by_before_optional_at_the_end() -> None:
    text = pattern(f"{A} then {NOT_B} then any {named('c', '?')}", "skip none")
    assert sorted(matches(text, "a1 c1 b1 c2")) == ["a1", "a1 c1"]


def test_flink_not_followed_by_after_a_loop_also_checks_inside_the_loop() -> None:
    # testNotFollowedByNextAfterOneOrMoreEager / ...AnyAfterOneOrMoreEager
    events = "a1 b1 b2 b3 c1 b4 b5 b6 d1"
    text = pattern(f"{A} then {named('b', '+')} then {NOT_C} then {D}", "skip none")
    assert matches(text, events) == []
    text = pattern(f"{A} then any {named('b', '+')} then {NOT_C} then {D}", "skip none")
    assert sorted(matches(text, events)) == sorted(
        [
            "a1 b4 b5 b6 d1",
            "a1 b4 b5 d1",
            "a1 b4 d1",
            "a1 b5 b6 d1",
            "a1 b5 d1",
            "a1 b6 d1",
        ]
    )


def test_flink_not_followed_by_before_a_loop() -> None:
    # testNotFollowedByBeforeOneOrMoreEager: b1 is taken before c1, so c1 is irrelevant
    text = pattern(f"{A} then {NOT_C} then {named('b', '+')} then {D}", "skip none")
    assert sorted(matches(text, "a1 b1 c1 b4 b5 b6 d1")) == sorted(
        ["a1 b1 b4 b5 b6 d1", "a1 b1 b4 b5 d1", "a1 b1 b4 d1", "a1 b1 d1"]
    )


def test_flink_times_with_not_followed_by() -> None:
    # testTimesWithNotFollowedBy
    text = pattern(f"{A} then any {named('b', '{2}')} then {NOT_C} then {D}", "skip none")
    assert matches(text, "a1 b1 c1 b2 d1") == []


def test_flink_group_not_followed_by() -> None:
    # GroupITCase.testGroupNotFollowedBy: c (a b) ^d e
    text = pattern(
        f'{C} then any ({A} then {B}) then not nd where name == "d" then e where name == "e"',
        "skip none",
    )
    assert matches(text, "c1 a1 b1 d1 a2 b2 e1") == ["c1 a2 b2 e1"]


def test_flink_not_followed_by_before_optional_times_within() -> None:
    # §6 / testNotFollowByBeforeTimesWithin: {a1} is emitted as soon as a1 arrives
    # and is not retracted by b1
    text = pattern(f"{A} then {NOT_B} then {named('c', '{0,2}')}", "within 3ms\n  skip none")
    assert sorted(matches(text, "a1@1 b1@2 a2@10 c1@11 c2@12 a3@20 c3@21 c4@24")) == sorted(
        ["a1", "a2", "a2 c1", "a2 c1 c2", "a3", "a3 c3"]
    )


# -------------------------------------------------------------- `then not` at the end


@pytest.mark.parametrize(
    "text",
    [
        # FIRST_AND_LAST window ...
        pattern(f"{A} then {NOT_B}", "within 3ms\n  skip none"),
        # ... or PREVIOUS_AND_CURRENT on the NOT stage itself
        pattern(f"{A} then {NOT_B} within 3ms", "skip none"),
    ],
    ids=["pattern-within", "stage-within"],
)
def test_flink_not_followed_by_within_at_the_end(text: str) -> None:
    # testNotFollowedByWithinFirstAndLastAtEnd / ...PreviousAndCurrentAtEnd
    spec = "a1@1 b1@2 a2@4 c1@5 b2@10 a3@11 b3@13"
    assert matches(text, spec) == ["a2"]


def test_trailing_then_not_completes_as_a_match_when_time_passes() -> None:
    text = pattern(f"{A} then {NOT_B} within 10ms", "skip none", WITH_TIMEOUTS)
    alerts = run_pattern(text, events_from("a1@0 x1@5 y1@30"))
    assert [a.record["kind"] for a in alerts] == ["match"]
    # the pending match needs time to pass: nothing before the watermark moves on
    assert run_pattern(text, events_from("a1@0 x1@5"), finish=False) == []
    # ... and the end of input (watermark +inf) fires it; its time is the deadline
    # (docs/alerts.md: "the event time of the completing event or of the deadline")
    assert matches_at(text, "a1@0 x1@5") == [("a1", 10)]


def test_trailing_then_not_window_border() -> None:
    # the window expires at t - a1 >= 10, before the event at t is processed
    text = pattern(f"{A} then {NOT_B} within 10ms", "skip none")
    assert matches(text, "a1@0 b1@9") == []
    assert matches(text, "a1@0 b1@10") == ["a1"]


def test_flink_not_followed_by_at_the_end_goes_through_the_skip_strategy() -> None:
    # testNotFollowedByWithinAtEndAfterMatch (skip past last): the pending matches all
    # complete when time passes; the first by start event prunes the rest. Which of the
    # matches starting at a1 wins is implementation-defined in Flink (§8, marked
    # unsure); Flink's test expects the longest.
    text = pattern(
        f"{named('a', '+ combinations')} then {C} then {NOT_B}", "within 5ms\n  skip past last"
    )
    got = matches(text, "a1@1 a2@2 a3@3 c1@4 c2@10")
    assert len(got) == 1
    assert got[0].startswith("a1") and got[0].endswith("c1")


def test_negated_stages_never_appear_in_the_match() -> None:
    text = pattern(f"{A} then {NOT_B} then {C} next {NOT_B}", "skip none")
    [alert] = run_pattern(text, events_from("a1 c1 x1"))
    assert list(alert.record["events"]) == ["a", "c"]
