"""Event time: watermarks, out-of-order arrival, late events, equal timestamps, end of
input (docs/flink-semantics.md §9, §13.7 and docs/semantics.md "Time").

The watermark is `max time seen - out-of-orderness - 1`; an event at or before the
watermark is late; buffered events are fed in (time, arrival) order once the
watermark passes them.
"""

from __future__ import annotations

import random

import pytest
from helpers import WITH_TIMEOUTS, events_from, feed, matches, named, pattern, show
from hypothesis import example, given, settings
from hypothesis import strategies as st

A, B, C = named("a"), named("b"), named("c")
NEXT = pattern(f"{A} next {B}", "skip none")


def shown(result: object) -> list[str]:
    return [show(a) for a in result.alerts]  # type: ignore[attr-defined]


@pytest.mark.parametrize("batch", [1, 2, 4])
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # arrival a1, b1, c1 but time order b1 (5), a1 (6), c1 (7): b1 is not after a1
        pytest.param("a1@6 b1@5 c1@7 z1@20", [], id="later-in-arrival"),
        # arrival b1, a1 but time order a1 (5), b1 (6)
        pytest.param("b1@6 a1@5 c1@7 z1@20", ["a1 b1"], id="b-arrives-first"),
        # arrival x1, a1, b1 but time order a1 (5), x1 (6), b1 (7): x1 breaks `next`
        pytest.param("x1@6 a1@5 b1@7 z1@20", [], id="x-arrives-first"),
    ],
)
def test_out_of_order_arrival_is_matched_in_event_time_order(
    spec: str, expected: list[str], batch: int
) -> None:
    _, result = feed(NEXT, events_from(spec), ooo=3, batch=batch)
    assert shown(result) == expected
    assert result.dead_letters == []


def test_nothing_is_matched_until_the_watermark_passes_the_event() -> None:
    text = pattern(f"{A} then {B}")
    evs = events_from("a1@1000 b1@1001 z1@1010")
    _, first = feed(text, evs[:2], finish=False)
    assert first.alerts == []  # watermark 1000: b1 is still buffered
    _, more = feed(text, evs, finish=False)
    assert shown(more) == ["a1 b1"]  # z1 moved the watermark to 1009
    _, lagging = feed(text, evs, finish=False, ooo=20)
    assert lagging.alerts == []  # watermark 989: nothing fed yet


def test_late_events_become_dead_letters() -> None:
    evs = events_from("a1@1000 x1@1010 b1@1005 b2@1009 b3@1010")
    _, result = feed(pattern(f"{A} then {B}", "skip none"), evs, ooo=0)
    # after x1 the watermark is 1009: 1005 and 1009 (equal to it) are late, 1010 is not
    assert [(d.event["id"], d.reason) for d in result.dead_letters] == [
        ("b1", "late"),
        ("b2", "late"),
    ]
    assert shown(result) == ["a1 b3"]


def test_out_of_orderness_admits_events_within_the_bound() -> None:
    evs = events_from("a1@1000 x1@1010 b1@1005")
    _, result = feed(pattern(f"{A} then {B}"), evs, ooo=5)
    assert result.dead_letters == []
    assert shown(result) == ["a1 b1"]


def test_equal_timestamps_keep_arrival_order() -> None:
    assert matches(NEXT, "a1@5 b1@5") == ["a1 b1"]
    assert matches(NEXT, "b1@5 a1@5") == []
    # also across batches and with out-of-order arrival around them
    for batch in (1, 2, 3):
        assert matches(NEXT, "a1@5 x1@4 b1@5 c1@9", ooo=2, batch=batch) == ["a1 b1"]
        assert matches(NEXT, "b1@5 x1@4 a1@5 c1@9", ooo=2, batch=batch) == []


def test_order_by_breaks_ties_in_event_time_before_arrival() -> None:
    # Flink's EventComparator (MATCH_RECOGNIZE: ORDER BY keys after the time attribute)
    text = pattern(f"{A} next {B}", "order by rank\n  skip none")
    assert matches(text, "b1:rank=2@5 a1:rank=1@5 z1@9") == ["a1 b1"]
    assert matches(text, "a1:rank=2@5 b1:rank=1@5 z1@9") == []
    # the time still comes first
    assert matches(text, "b1:rank=1@6 a1:rank=2@5 z1@9", ooo=2) == ["a1 b1"]


def test_end_of_input_fires_windows_and_trailing_then_not() -> None:
    text = pattern(f"{A} then {B}", "within 10ms", WITH_TIMEOUTS)
    _, open_ = feed(text, events_from("a1@0 z1@3"), finish=False)
    assert open_.alerts == []
    assert matches(text, "a1@0 z1@3") == ["timeout:a1"]
    text = pattern(f"{A} then not nb where name == \"b\"", "within 10ms")
    _, open_ = feed(text, events_from("a1@0 z1@3"), finish=False)
    assert open_.alerts == []
    assert matches(text, "a1@0 z1@3") == ["a1"]


def test_watermark_passing_a_window_fires_it_without_further_events_of_the_key() -> None:
    text = pattern(f"{A} then {B}", "key user\n  within 10ms", WITH_TIMEOUTS)
    evs = events_from("a1:user=u1@0 z1:user=u2@50")
    _, result = feed(text, evs, finish=False)
    assert shown(result) == ["timeout:a1"]


# -------------------------------------------------------------- property


def arrival_order(evs: list[dict], ooo: int, rnd: random.Random) -> list[dict]:
    """A shuffle in which no event is late for out-of-orderness `ooo`: sort by time plus
    a jitter in [0, ooo]; anything seen before an event has time <= its time + ooo."""
    return sorted(evs, key=lambda e: (e["ts"] + rnd.randint(0, ooo), rnd.random()))


PROP = pattern(f"{A} then {named('b', '+')} then {C}", "within 20ms\n  skip none",
               WITH_TIMEOUTS)


# arrival b1, a0: b1 arrives before the event that starts its partial match
@example(names=list("ab"), gaps=[1] * 12, ooo=5, batch=1, seed=1)
@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(st.sampled_from("abcx"), min_size=1, max_size=12),
    gaps=st.lists(st.integers(min_value=1, max_value=6), min_size=12, max_size=12),
    ooo=st.integers(min_value=1, max_value=10),
    batch=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_out_of_order_arrival_gives_the_in_order_result(
    names: list[str], gaps: list[int], ooo: int, batch: int, seed: int
) -> None:
    t, evs = 0, []
    for i, n in enumerate(names):
        t += gaps[i]
        evs.append({"id": f"{n}{i}", "name": n, "ts": t})
    _, expected = feed(PROP, evs)
    shuffled = arrival_order(evs, ooo, random.Random(seed))
    _, got = feed(PROP, shuffled, ooo=ooo, batch=batch)
    assert got.dead_letters == []
    assert sorted(shown(got)) == sorted(shown(expected))
    # matches (not timeouts) come out in the same order
    assert [m for m in shown(got) if "timeout" not in m] == [
        m for m in shown(expected) if "timeout" not in m
    ]


def test_ancient_timestamps_are_refused_whatever_the_batch() -> None:
    """Issue 14, Why 11: `ts=0` was accepted as on time in the first batch and `late`
    in later ones. With the plausibility check that the CLI and the service turn on, an
    ancient time is a `bad_time` dead letter that names the likely unit, in the first
    batch as in any other; plausible times keep Flink's watermark rule."""
    from cep.compiler.pipeline import compile_pattern
    from cep.dsl.parser import parse
    from cep.runtime.engine import Engine, EngineConfig

    t0 = 1_763_712_000_000
    plan = compile_pattern(parse(pattern(named("a") + " then " + named("b"))).patterns[0])
    eng = Engine([plan], EngineConfig(max_out_of_orderness_ms=5000, plausible_times=True),
                 now_ms=lambda: t0)
    first = eng.process([{"id": "a1", "name": "a", "ts": 0},
                         {"id": "a2", "name": "a", "ts": t0}])
    later = eng.process([{"id": "a3", "name": "a", "ts": 0},
                         {"id": "b1", "name": "b", "ts": t0 + 10}])
    end = eng.finish()
    reasons = [(d.reason, d.detail) for r in (first, later) for d in r.dead_letters]
    assert [r for r, _ in reasons] == ["bad_time", "bad_time"]
    assert all("ts=0" in detail for _, detail in reasons)
    assert [show(a) for r in (first, later, end) for a in r.alerts] == ["a2 b1"]
