"""Partition tasks in the engine: a task's state is exported, dropped and imported through
the public surface (`open_task` / `task(n).checkpoint()` / `close_task` / `restore`), its
watermark is its own, and pattern changes reach every task."""

from __future__ import annotations

from typing import Any

import pytest

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.runtime.engine import Engine, EngineConfig
from cep.runtime.records import Batch

SRC = """
pattern card_testing {
  from tx
  key card
  within 10m
  match
    tiny{3,} where amount < 2
    then big where amount > 100
  emit { card = key }
}
"""
T0 = 1_700_000_000_000


def plans(src: str = SRC) -> list[Any]:
    return [compile_pattern(p) for p in load_source(src)]


def new_engine() -> Engine:
    return Engine(plans(), EngineConfig(idle_timeout_ms=60_000), now_ms=lambda: T0 + 3_600_000)


def ev(i: int, amount: float, card: str) -> dict[str, Any]:
    return {"id": f"e{i}", "ts": T0 + i * 1000, "card": card, "amount": amount}


def batch(events: list[dict[str, Any]], task: int) -> Batch:
    return Batch(events, [("tx", task, i) for i in range(len(events))], stream="tx",
                 partition=("tx", task), task=task)


# card a on task 0, card b on task 1
FIRST = {0: [ev(0, 1, "a"), ev(1, 1, "a"), ev(2, 1, "a")],
         1: [ev(3, 1, "b"), ev(4, 1, "b"), ev(5, 1, "b")]}
REST = {0: [ev(10, 500, "a"), ev(11, 5, "a")], 1: [ev(12, 500, "b"), ev(13, 5, "b")]}


def reference_ids() -> list[str]:
    e = new_engine()
    out = []
    for part in (FIRST, REST):
        for t in (0, 1):
            out += [a.record["alert_id"] for a in e.process(
                part[t], stream="tx", partition=("tx", t)).alerts]
    out += [a.record["alert_id"] for a in e.finish().alerts]
    return sorted(out)


def test_a_task_moves_through_export_drop_import_and_completes_its_matches() -> None:
    e1 = new_engine()
    e1.open_task(0)
    e1.open_task(1)
    for t in (0, 1):
        assert not e1.process(batch(FIRST[t], t)).alerts
    # export task 1 (its checkpoint), drop it here, import it on another engine
    exported = e1.task(1).checkpoint()
    e1.task(1).checkpointed()
    e1.close_task(1)
    assert e1.tasks() == [0]
    assert e1.snapshot().patterns[0].keys == 1  # only card a's state is left
    e2 = new_engine()
    stats = e2.open_task(1).restore((k, v) for k, v in exported.items() if v is not None)
    assert stats["keys"] == 1
    got = [a.record["alert_id"] for a in e1.process(batch(REST[0], 0)).alerts]
    got += [a.record["alert_id"] for a in e2.process(batch(REST[1], 1)).alerts]
    got += [a.record["alert_id"] for e in (e1, e2) for a in e.finish().alerts]
    assert sorted(got) == reference_ids() and len(got) == 2


def test_a_dropped_task_without_its_state_misses_its_match() -> None:
    # the control for the test above: the state is what completes the match
    e = new_engine()
    e.open_task(1)
    e.process(batch(FIRST[1], 1))
    e.close_task(1)
    e.open_task(1)
    assert not e.process(batch(REST[1], 1)).alerts and not e.finish().alerts


def test_each_task_has_its_own_watermark() -> None:
    e = new_engine()
    e.open_task(0)
    e.open_task(1)
    e.process(batch([ev(1000, 1, "b")], 1))  # task 1 far ahead in event time
    res = e.process(batch([ev(0, 1, "a")], 0))  # not late: task 0's clock is its own
    assert not res.dead_letters
    assert e.task(0).watermark() < e.task(1).watermark()
    assert e.watermark() == e.task(0).watermark()


def test_pattern_changes_reach_every_task_and_new_tasks() -> None:
    e = new_engine()
    e.open_task(0)
    e.process(batch(FIRST[0], 0))
    v2 = plans(SRC.replace("amount < 2", "amount < 3").replace("pattern card_testing",
                                                               "pattern card_testing"))[0]
    object.__setattr__(v2, "version", 2)
    e.add(v2)
    assert [(p.name, p.version, p.draining) for p in e.task(0).patterns()] == [
        ("card_testing", 1, True), ("card_testing", 2, False)]
    t1 = e.open_task(1)  # a task opened after the swap finds both versions
    assert t1.signature() == e.task(0).signature()
    e.remove("card_testing")
    assert e.task(0).patterns() == [] and e.task(1).patterns() == []


def test_batches_need_their_task_once_tasks_are_open() -> None:
    e = new_engine()
    e.open_task(0)
    with pytest.raises(ValueError, match="task"):
        e.process([ev(0, 1, "a")], stream="tx")
    with pytest.raises(ValueError, match="open"):
        e.open_task(0)
    with pytest.raises(RuntimeError, match="task"):
        e.checkpoint()
