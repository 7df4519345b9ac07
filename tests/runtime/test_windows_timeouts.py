"""Windows and timeouts (docs/flink-semantics.md §7, §13.5).

Header `within` is Flink's `within` (FIRST_AND_LAST); a stage `within` is Flink's
`within(d, PREVIOUS_AND_CURRENT)`, applied to every state of the stage (our documented
deviation for loops). `on timeout emit` is Flink's TimedOutPartialMatchHandler.
"""

from __future__ import annotations

import pytest
from helpers import WITH_TIMEOUTS, matches, matches_at, named, pattern

A, B, C, X = named("a"), named("b"), named("c"), named("x")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a1@0 b1@9", [("a1 b1", 9)]),
        # the border is exclusive: t - first >= 10 expires, checked before t is processed
        ("a1@0 b1@10", [("timeout:a1", 10)]),
    ],
)
def test_pattern_window_border_is_exclusive(spec: str, expected: list[tuple[str, int]]) -> None:
    text = pattern(f"{A} then {B}", "within 10ms", WITH_TIMEOUTS)
    assert matches_at(text, spec) == expected


def test_timeout_time_is_start_plus_window_not_detection_time() -> None:
    # detected only when the watermark passes 10 (here: at the end of input)
    text = pattern(f"{A} then {B} then {C}", "within 10ms", WITH_TIMEOUTS)
    assert matches_at(text, "a1@0 b1@3") == [("timeout:a1 b1", 10)]
    assert matches_at(text, "a1@0 b1@3 z1@500") == [("timeout:a1 b1", 10)]


def test_timeout_reports_the_events_taken_so_far() -> None:
    text = pattern(f"{A} then {named('b', '+')} then {C}", "within 10ms\n  skip none",
                   WITH_TIMEOUTS)
    got = matches(text, "a1@0 b1@2 b2@4")
    # every open partial match times out (one timeout each, §7): the one still in the
    # loop, and the one that left the loop after b1 and skipped b2 waiting for c
    assert sorted(got) == ["timeout:a1 b1", "timeout:a1 b1 b2"]


def test_a_completed_match_is_not_also_a_timeout() -> None:
    text = pattern(f"{A} then {B}", "within 10ms", WITH_TIMEOUTS)
    assert matches(text, "a1@0 b1@5") == ["a1 b1"]


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        # died by strict contiguity
        (pattern(f"{A} next {B}", "within 10ms", WITH_TIMEOUTS), "a1@0 x1@1"),
        # died by negation
        (pattern(f"{A} then not nx where name == \"x\" then {B}", "within 10ms", WITH_TIMEOUTS),
         "a1@0 x1@1"),
        # never took an event: the bare start state never times out
        (pattern(f"{A} then {B}", "within 10ms", WITH_TIMEOUTS), "x1@0 y1@1 b1@2"),
    ],
    ids=["condition", "negation", "no-event"],
)
def test_partial_matches_that_die_or_never_started_are_not_reported(text: str, spec: str) -> None:
    assert matches(text, spec) == []


# -------------------------------------------------------------- stage `within`


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a1@0 b1@4 c1@100", ["a1 b1 c1"]),  # c has no window of its own
        ("a1@0 b1@6 c1@7", []),
        ("a1@0 b1@5 c1@7", []),  # border exclusive, like the pattern window
        # skipped events do not reset the gap: it is measured from the last taken event
        ("a1@0 x1@3 b1@6 c1@7", []),
    ],
)
def test_stage_window_bounds_only_the_gap_before_that_stage(
    spec: str, expected: list[str]
) -> None:
    text = pattern(f"{A} then {named('b', after='within 5ms')} then {C}", "skip none")
    assert matches(text, spec) == expected


def test_stage_window_timeout_is_previous_plus_window() -> None:
    text = pattern(f"{A} then {B} then {named('c', after='within 5ms')}", "", WITH_TIMEOUTS)
    assert matches_at(text, "a1@0 b1@100") == [("timeout:a1 b1", 105)]


def test_partial_matches_waiting_at_a_stage_without_window_never_time_out() -> None:
    text = pattern(f"{A} then {named('b', after='within 5ms')} then {C}", "", WITH_TIMEOUTS)
    assert matches(text, "a1@0 b1@4") == []
    # while waiting for b (which has a window) it does time out
    assert matches_at(text, "a1@0") == [("timeout:a1", 5)]


def test_stage_window_on_a_loop_applies_between_its_events() -> None:
    text = pattern(f"{A} then {named('b', '+', after='within 5ms')} then {C}", "skip none")
    assert sorted(matches(text, "a1@0 b1@3 b2@7 c1@20")) == ["a1 b1 b2 c1", "a1 b1 c1"]
    # b2 comes 6ms after b1: the loop cannot take it; the branch that left the loop
    # waits for c without a window
    assert sorted(matches(text, "a1@0 b1@3 b2@9 c1@20")) == ["a1 b1 c1"]
