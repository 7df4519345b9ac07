"""Minimal reproducers of the bugs the fuzz properties found (test_fuzz_engine.py,
test_fuzz_mutations.py).

All of them are fixed and stay as plain regression tests. (While a bug is open it is a
strict xfail here, and fuzz_run.py keeps the property tests green by assuming its
exact shape away; both go when it is fixed.)
"""

from __future__ import annotations

import warnings

import pytest
from fuzz_run import compile_text, new_engine, run, run_with_restore

from cep.io.jsonl import JsonlSink
from cep.runtime.engine import Alert
from cep.state.store import MemoryStore


def kinds_and_ids(alerts: list[Alert]) -> list[tuple[str, list[str]]]:
    return [
        (a.record["kind"], [e["id"] for evs in a.record["events"].values() for e in evs])
        for a in alerts
    ]


# ---------------------------------------------------------------- BUG-1


def test_comparison_of_two_int_literals_compiles() -> None:
    plan = compile_text("pattern bug1a { match a where 0 < 1 }")
    eng, alerts = run(plan, [{"id": 1, "ts": 1}], 1)
    assert eng.snapshot().counters.get("condition_errors", 0) == 0
    assert len(alerts) == 1


def test_comparison_with_negative_float_literal_on_the_left() -> None:
    plan = compile_text("pattern bug1b { match a where -1.5 < 0 }")
    eng, alerts = run(plan, [{"id": 1, "ts": 1}, {"id": 2, "ts": 2}], 1)
    assert eng.snapshot().counters.get("condition_errors", 0) == 0, eng.snapshot().errors
    assert len(alerts) == 2


# ---------------------------------------------------------------- BUG-2


@pytest.mark.parametrize("cond", ['"x" != "y"', "1 in [1, 2]", 'not ("x" == "y")'])
def test_literal_on_the_left_of_equality_or_in_compiles_cleanly(cond: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = compile_text(f"pattern bug2_{len(cond)} {{ match a where {cond} }}")
    _, alerts = run(plan, [{"id": 1, "ts": 1}], 1)
    assert len(alerts) == 1


# ---------------------------------------------------------------- BUG-3


def test_until_true_compiles() -> None:
    # every event ends the loop before it is taken (as in Flink's UntilConditionITCase:
    # the until-event is never part of the loop), so nothing matches
    plan = compile_text("pattern bug3 { match a+ until true }")
    eng, alerts = run(plan, [{"id": 1, "ts": 1}, {"id": 2, "ts": 2}], 1)
    assert eng.snapshot().counters.get("condition_errors", 0) == 0
    assert alerts == []


# ---------------------------------------------------------------- BUG-4


def test_greedy_stage_in_group_with_until_compiles() -> None:
    compile_text("pattern bug4 { match (a+ greedy where x == 1)+ until y == 1 }")


# ---------------------------------------------------------------- BUG-5


BUG5 = ("pattern bug5 { within 5ms match a where x == 1 then b where x == 2 "
        "emit {} on timeout emit {} }")
BUG5_EVENTS = [
    {"id": "a0", "x": 1, "ts": 0},
    {"id": "a1", "x": 1, "ts": 10},  # a0's window (0 + 5) passed: timeout a0
    {"id": "b2", "x": 2, "ts": 11},  # match a1 b2
    {"id": "a3", "x": 1, "ts": 12},  # times out at 17
    {"id": "z", "ts": 30},  # moves the watermark past 17
]


def test_alert_order_one_event_per_batch() -> None:
    _, alerts = run(compile_text(BUG5), BUG5_EVENTS, 1)
    assert kinds_and_ids(alerts) == [
        ("timeout", ["a0"]), ("match", ["a1", "b2"]), ("timeout", ["a3"]),
    ]


def test_alert_order_does_not_depend_on_batch_size() -> None:
    plan = compile_text(BUG5)
    _, one = run(plan, BUG5_EVENTS, 1)
    _, whole = run(plan, BUG5_EVENTS, len(BUG5_EVENTS))
    assert kinds_and_ids(whole) == kinds_and_ids(one)


# ---------------------------------------------------------------- BUG-6 (fixed)


@pytest.mark.parametrize("seq", [
    "a then not b then c? then (d?)+",
    "a then not b then c* then (d?)*",
    "a then not b then c? then e? then (d? next f?)+ then g",
])
def test_then_not_before_optional_stage_and_optional_loop_compiles(seq: str) -> None:
    compile_text(f"pattern bug6 {{ match {seq} }}")


# ---------------------------------------------------------------- BUG-7 (fixed)


BUG7 = "pattern bug7 { key k within 10ms match a then b where x == 1 on timeout emit {} }"
BUG7_EVENTS = [
    {"id": "e1", "k": "k2", "ts": 0},  # registers its window timer (10) first
    {"id": "e2", "k": "k1", "ts": 0},  # same deadline, registered second
    {"id": "e3", "ts": 1},  # moves the watermark so both are processed
]


def test_restore_keeps_the_order_of_simultaneous_timeouts() -> None:
    plan = compile_text(BUG7)
    _, straight = run(plan, BUG7_EVENTS, 1)
    _, resumed = run_with_restore(plan, BUG7_EVENTS, 1, split=3)
    # timers due at the same time fire in key order, with or without a restore
    assert [a.record["key"] for a in straight] == ["k1", "k2"]
    assert [a.record["key"] for a in resumed] == ["k1", "k2"]


# ---------------------------------------------------------------- BUG-8 (fixed)


BUG8 = "pattern bug8 { key k match a where x == 1 then b where x == 2 }"
BUG8_EVENTS = [
    {"id": "e1", "k": 1, "x": 1, "ts": 0},
    {"id": "e2", "k": 1, "x": 2, "ts": 1},  # match e1 e2: key 1 holds nothing after it
    {"id": "f", "k": "other", "ts": 5},  # (one event per batch: e2 is processed now)
    {"id": "e3", "k": True, "x": 1, "ts": 6},  # `true` == 1 in Python: same partition
    {"id": "e4", "k": 1, "x": 2, "ts": 7},
    {"id": "z", "ts": 20},
]


def test_json_distinct_key_values_are_distinct_partitions() -> None:
    plan = compile_text(BUG8)
    _, one = run(plan, BUG8_EVENTS, 1)
    _, whole = run(plan, BUG8_EVENTS, len(BUG8_EVENTS))
    assert [a.record["alert_id"] for a in whole] == [a.record["alert_id"] for a in one]
    # e3 (key true) and e4 (key 1) are different keys: only e1 e2 match
    assert kinds_and_ids(one) == [("match", ["e1", "e2"])]


# ---------------------------------------------------------------- BUG-9 (fixed)


BUG9_EVENTS = [
    {"id": "e1", "ts": 1},
    {"id": "e2", "ts": 1, "s": "x", "o": 1},  # sorts before e1 (a missing `o` sorts last)
    {"id": "e3", "ts": 2},
]


@pytest.mark.parametrize("connector", ["then", "next"])
def test_order_by_ties_do_not_depend_on_batching(connector: str) -> None:
    plan = compile_text(f'pattern bug9 {{ order by o match a where s == "x" {connector} b }}')
    _, one = run(plan, BUG9_EVENTS, 1)
    _, whole = run(plan, BUG9_EVENTS, len(BUG9_EVENTS))
    assert kinds_and_ids(one) == [("match", ["e2", "e1"])]
    assert kinds_and_ids(whole) == [("match", ["e2", "e1"])]


# ---------------------------------------------------------------- BUG-10, BUG-11 (fixed)


@pytest.mark.parametrize("measure", ["round(1e300)", "x.a * 4", "floor(x.f)"])
def test_alerts_with_huge_integer_measures_can_be_written(measure: str, tmp_path) -> None:
    plan = compile_text(f"pattern bug10 {{ match x emit {{ m = {measure} }} }}")
    big = {"a": 2**62, "f": 1e300}
    _, alerts = run(plan, [{"id": 1, "ts": 1, **big}, {"id": 2, "ts": 2, **big}], 1)
    assert len(alerts) == 2
    sink = JsonlSink(tmp_path / "alerts.jsonl")
    try:
        sink.write_alerts(alerts)
    finally:
        sink.close()


def test_checkpoint_with_huge_integer_let_value() -> None:
    plan = compile_text("pattern bug11 { let v = a * a match x then y }")
    eng = new_engine(plan)
    eng.process([{"id": 1, "ts": 1, "a": 2**62}, {"id": 2, "ts": 2}])  # x takes event 1
    MemoryStore().write_batch(eng.checkpoint())
