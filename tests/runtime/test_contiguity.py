"""Contiguity between stages (`next` / `then` / `then any`) and inside a stage
(`consecutive` / relaxed / `combinations`): docs/flink-semantics.md §2 and §3.

The documented Flink examples assume Flink's default `noSkip()`; ours is
`skip past last`, so they are written with `skip none`.
"""

from __future__ import annotations

import pytest
from helpers import matches, named, pattern

A, B, C, D = named("a"), named("b"), named("c"), named("d")


@pytest.mark.parametrize(
    ("connector", "expected"),
    [
        # Flink docs: pattern `a b` over `a c b1 b2`
        ("next", []),
        ("then", ["a1 b1"]),
        ("then any", ["a1 b1", "a1 b2"]),
    ],
)
def test_docs_example_a_c_b1_b2(connector: str, expected: list[str]) -> None:
    assert matches(pattern(f"{A} {connector} {B}", "skip none"), "a1 c1 b1 b2") == expected


def test_then_any_under_skip_past_last_prunes_the_branch_that_kept_waiting() -> None:
    # the match {a1 b1} prunes every partial match started at or before b1 (§8)
    assert matches(pattern(f"{A} then any {B}"), "a1 c1 b1 b2") == ["a1 b1"]


def test_next_is_broken_by_an_event_no_condition_mentions() -> None:
    # `x1` is irrelevant to every condition but is still "the next event of the key"
    assert matches(pattern(f"{A} next {B}", "skip none"), "a1 x1 b1") == []
    assert matches(pattern(f"{A} next {B}", "skip none"), "a1 b1") == ["a1 b1"]


def test_matching_is_not_anchored_every_event_may_start_a_match() -> None:
    assert matches(pattern(f"{A} next {B}", "skip none"), "a1 a2 b1 x1 a3 b2") == [
        "a2 b1",
        "a3 b2",
    ]


def test_relaxed_skips_an_event_that_fails_an_iterative_condition() -> None:
    # §1: the skip test of `then` is NOT(condition), evaluated per partial match
    text = pattern(f"{A} then {named('b', cond='price > a.price')}", "skip none")
    assert matches(text, "a1:price=5 b1:price=3 b2:price=7") == ["a1 b2"]


def test_iterative_conditions_are_evaluated_per_partial_match() -> None:
    text = pattern(f"{A} then {named('b', cond='price > a.price')}", "skip none")
    assert matches(text, "a1:price=5 a2:price=1 b1:price=3 b2:price=9") == [
        "a2 b1",
        "a1 b2",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a1 d1", ["a1 d1"]),
        # group skipped: `next d` is measured from a1, the last taken event
        ("a1 x1 d1", []),        ("a1 x1 b1 c1 d1", ["a1 b1 c1 d1"]),
        ("a1 b1 c1 x1 d1", []),
    ],
)
def test_skipped_optional_group_measures_contiguity_from_the_last_taken_event(
    spec: str, expected: list[str]
) -> None:
    # §2: `a followedBy (b c)? next d` needs d right after a when the group is skipped
    text = pattern(f"{A} then ({B} next {C})? next {D}", "skip none")
    assert matches(text, spec) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("a1 d1", ["a1 d1"]),
        ("a1 x1 d1", []),
        ("a1 x1 b1 d1", ["a1 b1 d1"]),
    ],
)
def test_skipped_optional_stage_measures_contiguity_from_the_last_taken_event(
    spec: str, expected: list[str]
) -> None:
    text = pattern(f"{A} then {named('b', '?')} next {D}", "skip none")
    assert matches(text, spec) == expected


# Flink docs, "Contiguity within looping patterns": C D A1 A2 A3 D A4 B with
# `c followedBy a+ followedBy b`
LOOP_EVENTS = "c1 d1 a1 a2 a3 d2 a4 b1"


@pytest.mark.parametrize(
    ("modifier", "expected"),
    [
        ("consecutive", ["c1 a1 b1", "c1 a1 a2 b1", "c1 a1 a2 a3 b1"]),
        ("", ["c1 a1 b1", "c1 a1 a2 b1", "c1 a1 a2 a3 b1", "c1 a1 a2 a3 a4 b1"]),
        (
            "combinations",
            [
                "c1 a1 b1",
                "c1 a1 a2 b1",
                "c1 a1 a3 b1",
                "c1 a1 a4 b1",
                "c1 a1 a2 a3 b1",
                "c1 a1 a2 a4 b1",
                "c1 a1 a3 a4 b1",
                "c1 a1 a2 a3 a4 b1",
            ],
        ),
    ],
)
def test_docs_inner_contiguity_of_a_loop(modifier: str, expected: list[str]) -> None:
    text = pattern(f"{C} then {named('a', '+ ' + modifier)} then {B}", "skip none")
    # all complete at b1; their relative order is not specified
    assert sorted(matches(text, LOOP_EVENTS)) == sorted(expected)


def test_combinations_only_govern_events_after_the_first() -> None:
    # §3: `next('m').times(2).allowCombinations()` forces only the first m to be adjacent
    text = pattern(f"{A} next {named('m', '{2} combinations')}", "skip none")
    assert matches(text, "a1 m1 x1 m2") == ["a1 m1 m2"]
    assert matches(text, "a1 x1 m1 m2") == []
    assert sorted(matches(text, "a1 m1 m2 m3")) == ["a1 m1 m2", "a1 m1 m3"]


def test_consecutive_times_needs_adjacent_events() -> None:
    assert matches(pattern(named("a", "{3} consecutive"), "skip none"), "a1 a2 x1 a3 a4") == []
    assert matches(pattern(named("a", "{3}"), "skip none"), "a1 a2 x1 a3 a4") == [
        "a1 a2 a3",
        "a2 a3 a4",
    ]


def test_same_event_can_be_in_many_matches_and_duplicate_payloads_are_two_events() -> None:
    # the same payload (same id, same time) fed twice counts as two events
    assert matches(pattern(f"{A} then any {B}", "skip none"), "a1@5 a1@5 b1@6") == [
        "a1 b1",
        "a1 b1",
    ]
