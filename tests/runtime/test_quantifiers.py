"""Quantifiers: `?`, `+`, `*`, `{n}`, `{n,m}`, `{n,}`, `{0,m}`; trailing stages that
emit every prefix; optional first stage; per-loop windows (docs/flink-semantics.md §3).

Written with `skip none` (Flink's default) unless the case is about our default.
"""

from __future__ import annotations

import pytest
from helpers import events_from, matches, matches_at, named, pattern, run_pattern

A, B, C, X = named("a"), named("b"), named("c"), named("x")


@pytest.mark.parametrize(
    ("quant", "expected"),
    [
        # each match is emitted at its last event (a1=1000, a2=1001, a3=1002)
        ("{2}", [("a1 a2", 1001), ("a2 a3", 1002)]),
        ("{2,3}", [("a1 a2", 1001), ("a1 a2 a3", 1002), ("a2 a3", 1002)]),
        ("{2,}", [("a1 a2", 1001), ("a1 a2 a3", 1002), ("a2 a3", 1002)]),
        (
            "+",
            [
                ("a1", 1000),
                ("a1 a2", 1001), ("a2", 1001),
                ("a1 a2 a3", 1002), ("a2 a3", 1002), ("a3", 1002),
            ],
        ),
        ("{1}", [("a1", 1000), ("a2", 1001), ("a3", 1002)]),
    ],
)
def test_single_quantified_stage_emits_every_match_at_its_last_event(
    quant: str, expected: list[tuple[str, int]]
) -> None:
    got = matches_at(pattern(named("a", quant), "skip none"), "a1 a2 a3")
    assert sorted(got, key=lambda m: (m[1], m[0])) == sorted(expected, key=lambda m: (m[1], m[0]))
    # emission follows completion time
    assert [t for _, t in got] == sorted(t for _, t in got)


def test_trailing_optional_emits_with_and_without_it() -> None:
    text = pattern(f"{A} then {named('b', '?')}", "skip none")
    assert matches_at(text, "a1 b1") == [("a1", 1000), ("a1 b1", 1001)]


def test_trailing_loop_emits_every_prefix_eagerly() -> None:
    text = pattern(f"{A} then {named('b', '*')}", "skip none")
    assert matches_at(text, "a1 b1 b2") == [("a1", 1000), ("a1 b1", 1001), ("a1 b1 b2", 1002)]


def test_trailing_loop_under_our_default_skip_past_last_keeps_the_first_prefix() -> None:
    # {a1} completes at a1 and prunes every partial match started at or before a1
    assert matches(pattern(f"{A} then {named('b', '*')}"), "a1 b1 b2") == ["a1"]


def test_greedy_loop_at_the_end_still_emits_every_prefix() -> None:
    # §4: greedy is edge masking, not "longest match only"
    text = pattern(f"{A} then {named('b', '+ greedy')}", "skip none")
    assert matches(text, "a1 b1 b2 b3") == ["a1 b1", "a1 b1 b2", "a1 b1 b2 b3"]


def test_optional_first_stage_also_yields_matches_without_it() -> None:
    text = pattern(f"{named('a', '?')} then {B}", "skip none")
    assert sorted(matches(text, "a1 b1")) == ["a1 b1", "b1"]
    text = pattern(f"{named('a', '?')} next {B}", "skip none")
    assert matches(text, "a1 x1 b1") == ["b1"]


@pytest.mark.parametrize(
    ("quant", "spec", "expected"),
    [
        ("{2}", "x1 a1 a2 a3 b1", ["x1 a1 a2 b1"]),
        ("{2,3}", "x1 a1 a2 a3 b1", ["x1 a1 a2 b1", "x1 a1 a2 a3 b1"]),
        ("{2,}", "x1 a1 a2 a3 a4 b1", ["x1 a1 a2 b1", "x1 a1 a2 a3 b1", "x1 a1 a2 a3 a4 b1"]),
        # relaxed inner contiguity: y1 between the a's is skipped
        ("{2,3}", "x1 a1 y1 a2 a3 b1", ["x1 a1 a2 b1", "x1 a1 a2 a3 b1"]),
        # consecutive: y1 kills the loop; a1 had to be taken (`then` takes the first a)
        ("{2,3} consecutive", "x1 a1 y1 a2 a3 b1", []),
        # skipping the optional stage leaves a branch waiting for b that steps over the a's
        ("{0,2}", "x1 a1 a2 b1", ["x1 b1", "x1 a1 b1", "x1 a1 a2 b1"]),
        ("{1,2}?", "x1 a1 a2 b1", ["x1 b1", "x1 a1 b1", "x1 a1 a2 b1"]),
        # one a is not enough for {2,3}; only the skip remains
        ("{2,3}?", "x1 a1 b1", ["x1 b1"]),
        ("*", "x1 b1", ["x1 b1"]),
        ("+", "x1 b1", []),
    ],
)
def test_quantified_middle_stage(quant: str, spec: str, expected: list[str]) -> None:
    text = pattern(f"{X} then {named('a', quant)} then {B}", "skip none")
    assert sorted(matches(text, spec)) == sorted(expected)


def test_loop_within_bounds_the_gap_to_the_first_and_between_loop_events() -> None:
    # `within` on a looping stage: the gap from the previous taken event and between
    # consecutive events of the loop (per-loop windows, §3)
    text = pattern(f"{named('s')} then {named('a', '+', after='within 10ms')}", "skip none")
    assert matches_at(text, "s1@0 a1@5 a2@12 a3@30") == [("s1 a1", 5), ("s1 a1 a2", 12)]
    assert matches(text, "s1@0 a1@15") == []


def test_a_stage_that_took_no_event_is_absent_from_the_match() -> None:
    # §0.5: a skipped optional stage is absent, not an empty list
    text = pattern(f"{A} then {named('b', '?')} then {C}", "skip none")
    [alert] = run_pattern(text, events_from("a1 c1"))
    assert list(alert.record["events"]) == ["a", "c"]
    text = pattern(f"{A} then {named('b', '*')} then {C}", "skip none")
    [alert] = run_pattern(text, events_from("a1 c1"))
    assert list(alert.record["events"]) == ["a", "c"]
