"""Group patterns, including nested groups (docs/flink-semantics.md §10); the cases are
GroupITCase's, written with `skip none` (Flink's default). Matches are shown in
time order (a stage's events of every iteration are listed under its name)."""

from __future__ import annotations

import pytest
from helpers import events_from, feed, matches, named, pattern, run_pattern, show

A, B, C, D, E = (named(x) for x in "abcde")
AB = f"({A} then {B})"


def by_time(text: str, spec: str) -> list[str]:
    return sorted(matches(text, spec, by_time=True))


def case(name: str, seq: str, spec: str, expected: list[str]) -> object:
    return pytest.param(seq, spec, expected, id=name)


@pytest.mark.parametrize(
    ("seq", "spec", "expected"),
    [
        case("testGroupFollowedByTimes", f"{C} then {AB}{{2}} then {D}",
             "c1 a1 b1 a2 b2 d1", ["c1 a1 b1 a2 b2 d1"]),
        case("testGroupFollowedByOptional", f"{C} then {AB}? then {D}",
             "c1 a1 a2 b1 d1", ["c1 a1 b1 d1", "c1 d1"]),
        case("testFollowedByGroupTimesOptional", f"{C} then {AB}{{2}}? then {D}",
             "c1 a1 d1", ["c1 d1"]),
        case("testGroupFollowedByOneOrMore", f"{C} then {AB}+ then {D}",
             "c1 a1 b1 a2 b2 d1", ["c1 a1 b1 a2 b2 d1", "c1 a1 b1 d1"]),
        case("testGroupFollowedByZeroOrMore", f"{C} then {AB}* then {D}",
             "c1 a1 b1 a2 b2 d1", ["c1 a1 b1 a2 b2 d1", "c1 a1 b1 d1", "c1 d1"]),
        case("testGroupFollowedByAnyTimesCombinations",
             f"{C} then any {AB}{{2}} combinations then {D}",
             "c1 a1 b1 a2 b2 a3 b3 d1",
             ["c1 a1 b1 a2 b2 d1", "c1 a1 b1 a3 b3 d1", "c1 a2 b2 a3 b3 d1"]),
        case("testGroupFollowedByAnyTimesOptional", f"{C} then any {AB}{{2}}? then {D}",
             "c1 a1 b1 a2 b2 a3 b3 d1",
             ["c1 a1 b1 a2 b2 d1", "c1 a2 b2 a3 b3 d1", "c1 d1"]),
        case("testGroupFollowedByAnyOneOrMore", f"{C} then any {AB}+ then {D}",
             "c1 a1 b1 a2 b2 a3 b3 d1",
             ["c1 a1 b1 a2 b2 a3 b3 d1", "c1 a1 b1 a2 b2 d1", "c1 a1 b1 d1",
              "c1 a2 b2 a3 b3 d1", "c1 a2 b2 d1", "c1 a3 b3 d1"]),
        # on later iterations the group's inner contiguity (consecutive) applies
        case("testGroupNextZeroOrMore", f"{C} next {AB}* consecutive then {D}",
             "c1 a1 b1 a2 b2 a3 b3 d1",
             ["c1 a1 b1 a2 b2 a3 b3 d1", "c1 a1 b1 a2 b2 d1", "c1 a1 b1 d1", "c1 d1"]),
        case("testGroupBegin", f"{AB}{{1,2}} then {D}",
             "a1 b1 a2 b2 d1", ["a1 b1 a2 b2 d1", "a1 b1 d1", "a2 b2 d1"]),
        case("testGroupStartsWithOptionalPattern",
             f"{A} next ({named('b', '?')} next {C}) next {D}",
             "a1 c1 d1", ["a1 c1 d1"]),
        case("testGroupNest", f"{D} then ({A} then ({B} then {C})*)? then {E}",
             "d1 a1 b1 c1 b2 c2 e1",
             ["d1 a1 b1 c1 b2 c2 e1", "d1 a1 b1 c1 e1", "d1 a1 e1", "d1 e1"]),
        case("testGroupNestTimes",
             f"{D} then any ({A} then ({B} then {C}){{3}}){{0,2}} then {E}",
             "d1 a1 b1 c1 b2 c2 b3 c3 a2 b4 c4 b5 c5 b6 c6 e1",
             ["d1 a1 b1 c1 b2 c2 b3 c3 a2 b4 c4 b5 c5 b6 c6 e1",
              "d1 a1 b1 c1 b2 c2 b3 c3 e1",
              "d1 a2 b4 c4 b5 c5 b6 c6 e1",
              "d1 e1"]),
        case("testGroupNestTimesConsecutive",
             f"{D} then any ({A} then ({B} then {C}){{3}} consecutive){{0,2}} consecutive "
             f"then {E}",
             "d1 a1 b1 c1 b2 c2 b3 c3 a2 b4 c4 x1 b5 c5 b6 c6 e1",
             ["d1 a1 b1 c1 b2 c2 b3 c3 e1", "d1 e1"]),
    ],
)
def test_flink_group_cases(seq: str, spec: str, expected: list[str]) -> None:
    assert by_time(pattern(seq, "skip none"), spec) == sorted(expected)


def test_flink_followed_by_optional_group_pattern() -> None:
    # GroupITCase.testFollowedByOptionalGroupPattern: a -> (b next c)? next d
    text = pattern(f"{A} then ({B} next {C})? next {D}", "skip none")
    assert by_time(text, "a1 d1 d2") == ["a1 d1"]


def test_group_until_ends_every_iteration_and_releases_the_key() -> None:
    # GroupITCase.testGroupFollowedByOneOrMoreWithUntilCondition
    text = pattern(f"{C} then {AB}+ until name == \"d\" then {D}", "skip none")
    eng, result = feed(text, events_from("c1 a1 b1 a2 b2 d1"))
    assert sorted(show(a, by_time=True) for a in result.alerts) == [
        "c1 a1 b1 a2 b2 d1",
        "c1 a1 b1 d1",
    ]
    # only the (implicit) start state remains: no per-key state left
    assert eng.snapshot().patterns[0].keys == 0


def test_group_has_no_key_of_its_own_and_inner_stages_collect_every_iteration() -> None:
    text = pattern(f"{C} then {AB}{{2}} then {D}", "skip none")
    [alert] = run_pattern(text, events_from("c1 a1 b1 a2 b2 d1"))
    events = alert.record["events"]
    assert list(events) == ["c", "a", "b", "d"]
    assert [e["id"] for e in events["a"]] == ["a1", "a2"]
    assert [e["id"] for e in events["b"]] == ["b1", "b2"]
