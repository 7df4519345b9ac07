"""Lateness does not depend on batch boundaries (issue 14, "Why" 11): an event is judged
against the watermark after the events before it, not the watermark at the start of
its batch. Before, `ts=0` in the first batch was on time and in a later one late."""

from __future__ import annotations

import random
from typing import Any

import pytest
from helpers import feed, pattern, show

from cep.compiler.pipeline import compile_pattern
from cep.dsl.parser import parse
from cep.runtime.engine import Engine, EngineConfig

AB = pattern('a where type == "a" then b where type == "b"', "within 1m")
BASE = 1_700_000_000_000


def _outcome(events: list[dict[str, Any]], batch: int, ooo: int) -> tuple[Any, ...]:
    _, res = feed(AB, events, batch=batch, ooo=ooo)
    return (sorted(show(a) for a in res.alerts),
            sorted((d.event["id"], d.reason) for d in res.dead_letters))


def test_an_ancient_event_is_late_in_the_first_batch_too() -> None:
    evs = [{"id": "a1", "type": "a", "ts": BASE}, {"id": "old", "type": "b", "ts": 0},
           {"id": "b1", "type": "b", "ts": BASE + 5}]
    for batch in (1, 2, 3):
        _, res = feed(AB, evs, batch=batch)
        assert [(d.event["id"], d.reason) for d in res.dead_letters] == [("old", "late")]
        assert [show(a) for a in res.alerts] == ["a1 b1"]


@pytest.mark.parametrize("seed", range(20))
def test_alerts_and_dead_letters_are_the_same_for_every_batch_size(seed: int) -> None:
    rnd = random.Random(seed)
    ooo = rnd.choice([0, 3, 10])
    t = 1000
    events = []
    for i in range(rnd.randint(10, 60)):
        t += rnd.randint(0, 4)
        jitter = rnd.choice([0, 0, 0, -1, -3, -8, -20, -t])  # late, on time, ancient
        events.append({"id": f"e{i}", "type": rnd.choice("abx"),
                       "k": rnd.choice("pq"), "ts": t + jitter})
    want = _outcome(events, 1, ooo)
    for batch in (2, 5, 17, len(events)):
        assert _outcome(events, batch, ooo) == want, batch


def test_with_two_partitions_the_slower_one_holds_lateness_back() -> None:
    plan = compile_pattern(parse(AB).patterns[0])
    eng = Engine([plan], EngineConfig(), now_ms=lambda: 0)
    eng.process([{"id": "q", "type": "x", "ts": 100}], partition="slow")
    res = eng.process([{"id": "a1", "type": "a", "ts": 1000},
                       {"id": "b0", "type": "b", "ts": 500},  # held back by `slow`: on time
                       {"id": "z", "type": "b", "ts": 50}],  # behind `slow` too: late
                      partition="fast")
    assert [(d.event["id"], d.reason) for d in res.dead_letters] == [("z", "late")]
