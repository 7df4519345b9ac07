"""After-match skip strategies: emission order, holding back, pruning
(docs/flink-semantics.md §8, §12 documented examples, §13.6)."""

from __future__ import annotations

import pytest
from helpers import (
    events_from,
    feed,
    matches,
    named,
    pattern,
    run_pattern,
    show,
)

A, B, C = named("a"), named("b"), named("c")

# -------------------------------------------------------------- docs: `b+ c`

# The docs' `b+ c` example is MATCH_RECOGNIZE-style: strict concatenation and a
# consecutive loop, i.e. `b+ consecutive next c`.
STRICT_B_C = f"{named('b', '+ consecutive')} next {C}"


@pytest.mark.parametrize(
    ("skip", "expected"),
    [
        ("skip none", ["b1 b2 b3 c1", "b2 b3 c1", "b3 c1"]),
        ("skip to next", ["b1 b2 b3 c1", "b2 b3 c1", "b3 c1"]),
        ("skip past last", ["b1 b2 b3 c1"]),
        ("skip to first b", ["b1 b2 b3 c1", "b2 b3 c1", "b3 c1"]),
        ("skip to last b", ["b1 b2 b3 c1", "b3 c1"]),
    ],
)
def test_docs_b_plus_c(skip: str, expected: list[str]) -> None:
    assert matches(pattern(STRICT_B_C, skip), "b1 b2 b3 c1") == expected


# With our relaxed defaults (`b+ then c`) there are six matches, and the loop keeps
# partial matches open after c1 (it skips c1 and waits for more b's). Those open
# partial matches started at b1 hold back every match that starts later, for as long
# as they live (§8): without a window, forever.
RELAXED_B_C = f"{named('b', '+')} then {C}"
RELAXED_ALL = ["b1 c1", "b1 b2 c1", "b1 b2 b3 c1", "b2 c1", "b2 b3 c1", "b3 c1"]


def test_relaxed_b_plus_c_no_skip_emits_all_six() -> None:
    assert sorted(matches(pattern(RELAXED_B_C, "skip none"), "b1 b2 b3 c1")) == sorted(
        RELAXED_ALL
    )


@pytest.mark.parametrize(
    ("skip", "expected"),
    [
        # pruning removes the open b1 partial matches, which releases the next ones
        ("skip to next", ["b1", "b2", "b3"]),
        ("skip past last", ["b1"]),
        ("skip to last b", ["b1", "b3"]),
        # nothing started before b1 is pruned: the b1 loop stays open and holds back
        # the matches starting at b2 and b3
        ("skip to first b", ["b1", "b1", "b1"]),
    ],
)
def test_relaxed_b_plus_c_later_matches_are_held_back(skip: str, expected: list[str]) -> None:
    got = matches(pattern(RELAXED_B_C, skip), "b1 b2 b3 c1")
    assert [m.split()[0] for m in got] == expected
    assert all(m in RELAXED_ALL for m in got)


def test_held_matches_are_released_when_the_earlier_partial_matches_time_out() -> None:
    # as above with skip to first b, but with a window: the b1 partial matches expire
    # at 10, the b2 ones at 11, the b3 ones at 12, releasing everything in start order
    got = matches(pattern(RELAXED_B_C, "within 10ms\n  skip to first b"), "b1@0 b2@1 b3@2 c1@3")
    assert sorted(got) == sorted(RELAXED_ALL)
    assert [m.split()[0] for m in got] == ["b1", "b1", "b1", "b2", "b2", "b3"]


# -------------------------------------------------------------- docs: `a b+`


@pytest.mark.parametrize(
    ("skip", "expected"),
    [
        ("skip none", ["a1 b1", "a1 b1 b2", "a1 b1 b2 b3"]),
        ("skip to next", ["a1 b1"]),
    ],
)
def test_docs_a_b_plus(skip: str, expected: list[str]) -> None:
    assert matches(pattern(f"{A} then {named('b', '+')}", skip), "a1 b1 b2 b3") == expected


# -------------------------------------------------------------- docs: MATCH_RECOGNIZE A+ C

# PATTERN (A+ C) DEFINE A AS SUM(A.price) < 30 over prices 7, 9, 10, 5, 10, 7, 14;
# SQL: strict concatenation, consecutive greedy `+`, C undefined = every row.
SUM_LT_30 = (
    "a+ consecutive greedy where coalesce(sum(a.price), 0) + price < 30 next c"
)
PRICES = "r1:price=7 r2:price=9 r3:price=10 r4:price=5 r5:price=10 r6:price=7 r7:price=14"


@pytest.mark.parametrize(
    ("skip", "sums"),
    [
        ("skip past last", [26, 17]),
        ("skip to next", [26, 24, 25, 22, 17]),
        ("skip to last a", [26, 25, 17]),
        # SQL raises here (the target is the match's first row); our non-throwing
        # variant prunes strictly before the first row, i.e. nothing
        ("skip to first a", [26, 24, 25, 22, 17]),
        ("skip none", [26, 24, 25, 22, 17]),
    ],
)
def test_docs_match_recognize_sum_below_30(skip: str, sums: list[int]) -> None:
    text = pattern(SUM_LT_30, skip, "emit { total = sum(a.price) }")
    alerts = run_pattern(text, events_from(PRICES))
    assert [a.record["measures"]["total"] for a in alerts] == sums


# -------------------------------------------------------------- emission order


# s1 and s2 start partial matches; s2's completes first (e2), s1's later (e1)
ORDER = named("s") + " then " + named("e", cond="g == s.g")
ORDER_EVENTS = "s1:g=1 s2:g=2 e2:g=2 e1:g=1"


def test_no_skip_emits_in_completion_order() -> None:
    assert matches(pattern(ORDER, "skip none"), ORDER_EVENTS) == ["s2 e2", "s1 e1"]


def test_skip_strategy_emits_in_order_of_first_event() -> None:
    assert matches(pattern(ORDER, "skip to next"), ORDER_EVENTS) == ["s1 e1", "s2 e2"]
    # past last: {s1 e1} is released first and prunes the held {s2 e2} (starts <= e1)
    assert matches(pattern(ORDER, "skip past last"), ORDER_EVENTS) == ["s1 e1"]


def test_held_match_waits_for_the_earlier_partial_match() -> None:
    text = pattern(ORDER, "skip to next")
    evs = events_from(ORDER_EVENTS + " z1")  # z1 moves the watermark past e1
    _, first = feed(text, evs[:3] + evs[4:], finish=False)
    assert first.alerts == []  # {s2 e2} is complete but held behind s1's partial match
    _, everything = feed(text, evs, finish=False)
    assert [show(a) for a in everything.alerts] == ["s1 e1", "s2 e2"]


def test_held_match_is_released_when_the_earlier_partial_match_times_out() -> None:
    text = pattern(ORDER, "within 10ms\n  skip to next")
    assert matches(text, "s1:g=1@0 s2:g=2@1 e2:g=2@2") == ["s2 e2"]


def test_held_match_is_released_when_the_earlier_partial_match_dies() -> None:
    text = pattern(
        named("s") + ' then not k where name == "k" and g == s.g then '
        + named("e", cond="g == s.g"),
        "skip to next",
    )
    evs = events_from("s1:g=1 s2:g=2 e2:g=2 z1")
    _, held = feed(text, evs, finish=False)
    assert held.alerts == []  # {s2 e2} waits behind s1's open partial match
    evs = events_from("s1:g=1 s2:g=2 e2:g=2 k1:g=1 z1")
    _, released = feed(text, evs, finish=False)
    assert [show(a) for a in released.alerts] == ["s2 e2"]  # k1 killed s1's


def test_pruning_compares_time_then_arrival_within_a_timestamp() -> None:
    # {a1 b1} prunes starts <= b1 = (5, 2nd event); a2 also has time 5 but arrived later
    text = pattern(f"{A} then {B}", "skip past last")
    assert matches(text, "a1@5 b1@5 a2@5 b2@6") == ["a1 b1", "a2 b2"]
    assert matches(text, "a1@5 a2@5 b1@5 b2@6") == ["a1 b1"]


# -------------------------------------------------------------- skip to first / last


LOOP_OPT = f"{named('a', '+ consecutive')} next {named('b', '?')} next {C}"


@pytest.mark.parametrize(
    ("skip", "spec", "expected"),
    [
        # b took no event: nothing is pruned (like skip none)
        ("skip to first b", "a1 a2 c1", ["a1 a2 c1", "a2 c1"]),
        ("skip to last b", "a1 a2 c1", ["a1 a2 c1", "a2 c1"]),
        ("skip past last", "a1 a2 c1", ["a1 a2 c1"]),
        # b took b1: matches starting strictly before b1 are pruned
        ("skip to first b", "a1 a2 b1 c1", ["a1 a2 b1 c1"]),
        ("skip none", "a1 a2 b1 c1", ["a1 a2 b1 c1", "a2 b1 c1"]),
        # the target is a2: a2's own match survives (strictly before), a1's is gone
        ("skip to last a", "a1 a2 c1", ["a1 a2 c1", "a2 c1"]),
        ("skip to first a", "a1 a2 a3 c1", ["a1 a2 a3 c1", "a2 a3 c1", "a3 c1"]),
        ("skip to last a", "a1 a2 a3 c1", ["a1 a2 a3 c1", "a3 c1"]),
    ],
)
def test_skip_to_first_last_prune_strictly_before_the_target(
    skip: str, spec: str, expected: list[str]
) -> None:
    assert matches(pattern(LOOP_OPT, skip), spec) == expected


def test_held_matches_are_per_key_and_the_empty_hold_is_shared() -> None:
    """Keys without held matches share one empty, immutable hold (no list per key);
    a key that holds a match has its own list, and goes back to the shared one."""
    from cep.compiler.pipeline import compile_pattern
    from cep.dsl.parser import parse
    from cep.runtime.matcher import NO_HELD, Ev, KeyState, Matcher

    plan = compile_pattern(parse(
        'pattern p { match a where t == "a" then b where t == "b" and v == a.v }'
    ).patterns[0])
    m = Matcher(plan, lambda exc: None)
    k1, k2 = KeyState("k1"), KeyState("k2")
    assert k1.held is NO_HELD and k2.held is NO_HELD
    out: list = []
    for seq, (ks, t, v) in enumerate([(k1, "a", 1), (k1, "a", 2), (k2, "a", 2), (k1, "b", 2)]):
        m.process(ks, Ev(seq, seq, {"t": t, "v": v}, None, None), out)
    assert out == [] and len(k1.held) == 1  # waits for the partial match started first
    assert k2.held is NO_HELD and isinstance(k1.held, list)
    m.process(k1, Ev(9, 9, {"t": "b", "v": 1}, None, None), out)
    # the earlier match is released; past its last event the held one is pruned
    assert [(kind, r.start_ts) for kind, r, _ in out] == [("match", 0)]
    assert k1.held is NO_HELD
