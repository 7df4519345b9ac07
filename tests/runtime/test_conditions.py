"""Conditions: iterative conditions reading earlier stages, aggregates over loops,
`last(s)` inside s's own condition, missing fields and null (docs/flink-semantics.md §1,
§12 DEFINE/aggregates; docs/language.md "Expressions" and "Missing data and types")."""

from __future__ import annotations

import pytest
from helpers import events_from, matches, named, pattern, run_pattern

A, B = named("a"), named("b")

# -------------------------------------------------------------- earlier stages


def test_condition_reads_a_single_event_stage() -> None:
    text = pattern(f"{A} then {named('b', cond='price > a.price')}", "skip none")
    assert matches(text, "a1:price=5 b1:price=3 b2:price=7") == ["a1 b2"]


def test_condition_reads_a_stage_two_steps_back() -> None:
    text = pattern(
        f"{A} then {named('x')} then {named('b', cond='price == a.price + x.price')}",
        "skip none",
    )
    assert matches(text, "a1:price=1 x1:price=2 b1:price=4 b2:price=3") == ["a1 x1 b2"]


def test_ts_and_key_in_conditions() -> None:
    text = pattern(f"{A} then {named('b', cond='ts - a.ts < 5')}", "skip none")
    assert matches(text, "a1@0 b1@5 a2@10 b2@14") == ["a2 b2"]
    text = pattern(named("a", cond='key == "u1"'), "key user\n  skip none")
    assert matches(text, "a1:user=u1 a2:user=u2") == ["a1"]


def test_let_values_read_like_fields() -> None:
    text = pattern(
        f"{named('a', cond='p2 > 5')} then {named('b', cond='p2 > a.p2')}",
        "let p2 = price * 2\n  skip none",
    )
    assert matches(text, "a1:price=2 a2:price=4 b1:price=3 b2:price=5") == ["a2 b2"]


# -------------------------------------------------------------- aggregates

# a+ consecutive, then b right after: runs starting at a1, a2, a3 reach b1 with the
# loop holding [2, 9, 4], [9, 4] and [4]; m is x, y, x
AGG_EVENTS = "a1:price=2,m=x a2:price=9,m=y a3:price=4,m=x b1"
FROM_A1, FROM_A2, FROM_A3 = "a1 a2 a3 b1", "a2 a3 b1", "a3 b1"


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ("count(a) == 3", [FROM_A1]),
        ("count(a) >= 2", [FROM_A1, FROM_A2]),
        ("sum(a.price) == 15", [FROM_A1]),
        ("sum(a.price) == 13", [FROM_A2]),
        ("avg(a.price) == 5", [FROM_A1]),
        ("avg(a.price) == 6.5", [FROM_A2]),
        ("min(a.price) == 2", [FROM_A1]),
        ("min(a.price) == 4", [FROM_A2, FROM_A3]),
        ("max(a.price) == 9", [FROM_A1, FROM_A2]),
        ("distinct_count(a.m) == 2", [FROM_A1, FROM_A2]),
        ("distinct_count(a.m) == 1", [FROM_A3]),
        ("first(a).price == 9", [FROM_A2]),
        ("last(a).price == 4", [FROM_A1, FROM_A2, FROM_A3]),
        ("first(a).m == last(a).m", [FROM_A1, FROM_A3]),
        # an aggregate of any expression over one stage's fields
        ("sum(a.price * 2) == 26", [FROM_A2]),
    ],
)
def test_aggregates_over_a_loop_in_a_later_condition(cond: str, expected: list[str]) -> None:
    text = pattern(f"{named('a', '+ consecutive')} next {named('b', cond=cond)}", "skip none")
    assert sorted(matches(text, AGG_EVENTS)) == sorted(expected)


def test_aggregates_in_measures() -> None:
    text = pattern(
        f"{named('a', '+ consecutive')} next {B}",
        "",
        "emit { n = count(a), s = sum(a.price), mean = avg(a.price), lo = min(a.price), "
        "hi = max(a.price), kinds = distinct_count(a.m), head = first(a).price, "
        "tail = last(a).price }",
    )
    [alert] = run_pattern(text, events_from(AGG_EVENTS))
    assert alert.record["measures"] == {
        "n": 3, "s": 15, "mean": 5, "lo": 2, "hi": 9, "kinds": 2, "head": 2, "tail": 4,
    }


def test_aggregates_over_a_stage_that_took_no_event() -> None:
    # count is 0, the other aggregates are null
    text = pattern(
        f"{named('x')} then {named('a', '*')} then "
        + named("b", cond="count(a) == 0 and coalesce(sum(a.price), -1) == -1"),
        "skip none",
    )
    assert matches(text, "x1 b1") == ["x1 b1"]


def test_aggregate_in_the_loops_own_condition_excludes_the_current_event() -> None:
    # sum(a.price) is over the events accepted so far; price is the candidate's
    text = pattern(
        named("a", "+ consecutive", cond="coalesce(sum(a.price), 0) + price <= 10"), "skip none"
    )
    got = matches(text, "a1:price=4 a2:price=5 a3:price=2")
    assert "a1 a2" in got  # 4 + 5 <= 10
    assert "a1 a2 a3" not in got  # 9 + 2 > 10
    assert "a2 a3" in got


def test_last_inside_the_stages_own_condition_is_the_previously_accepted_event() -> None:
    # strictly increasing runs of prices
    text = pattern(
        named("a", "+ consecutive", cond="count(a) == 0 or price > last(a).price"), "skip none"
    )
    assert sorted(matches(text, "a1:price=1 a2:price=3 a3:price=2")) == sorted(
        ["a1", "a1 a2", "a2", "a3"]
    )


def test_iterative_loop_condition_per_branch_with_relaxed_contiguity() -> None:
    # §1: an event failing an iterative condition is skipped by the relaxed loop, not fatal
    text = pattern(named("a", "+", cond="count(a) < 2"), "skip none")
    assert sorted(matches(text, "a1 a2 a3")) == sorted(["a1", "a1 a2", "a2", "a2 a3", "a3"])


# -------------------------------------------------------------- missing data


@pytest.mark.parametrize(
    ("cond", "spec", "expected"),
    [
        ("price > 5", "a1:price=9 a2 a3:price=1", ["a1"]),
        # a comparison with a missing field is false, and `not` of it is false too
        ("not (price > 5)", "a1:price=9 a2 a3:price=1", ["a3"]),
        ("price != 5", "a1:price=9 a2", ["a1"]),
        ("not (price != 5)", "a1:price=5 a2", ["a1"]),
        # null reads like a missing field
        ("price == null", "a1 a2:price=1", []),
        # three-valued: unknown or true = true, unknown and false = false
        ("price > 5 or id == \"a1\"", "a1 a2", ["a1"]),
        ("not (price > 5 and id == \"zz\")", "a1", ["a1"]),
        # ... unknown or false = unknown, and `not` of unknown is still not a match
        ("not (price > 5 or id == \"zz\")", "a1", []),
        ("exists(price)", "a1:price=0 a2", ["a1"]),
        ("not exists(price)", "a1:price=0 a2", ["a2"]),
        # nested field paths
        ("geo.country == \"FR\"", "a1:geo=FR a2", []),
        # a type mismatch is false (and counted), never an exception
        ("name > 3", "a1 a2", []),
    ],
)
def test_missing_fields_never_make_a_match(cond: str, spec: str, expected: list[str]) -> None:
    assert matches(pattern(named("a", cond=cond), "skip none"), spec) == expected


def test_missing_field_in_an_earlier_stage() -> None:
    text = pattern(f"{A} then {named('b', cond='price > a.price')}", "skip none")
    assert matches(text, "a1 b1:price=3") == []
    text = pattern(f"{A} then {named('b', cond='not (price > a.price)')}", "skip none")
    assert matches(text, "a1 b1:price=3") == []


def test_nested_field_paths() -> None:
    text = pattern(named("a", cond='geo.country == "FR"'), "skip none")
    evs = [
        {"id": "a1", "name": "a", "ts": 1, "geo": {"country": "FR"}},
        {"id": "a2", "name": "a", "ts": 2, "geo": {"country": "DE"}},
        {"id": "a3", "name": "a", "ts": 3, "geo": None},
        {"id": "a4", "name": "a", "ts": 4},
    ]
    assert [a.record["events"]["a"][0]["id"] for a in run_pattern(text, evs)] == ["a1"]
