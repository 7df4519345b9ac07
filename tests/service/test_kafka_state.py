"""Kafka runner: watermark bookkeeping over assigned partitions (no broker)."""

from __future__ import annotations

from typing import Any

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.runtime.engine import Engine, EngineConfig
from cep.state.store import MemoryStore
from service.kafka.store import load_engine, register_partitions

SRC = """
pattern p { from s key k within 1m match a where v == 1 then b where v == 2 }
pattern q { from other key k match a where v == 1 }
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def new_engine(now: Clock, idle: int | None = 10_000) -> Engine:
    return Engine([compile_pattern(p) for p in load_source(SRC)],
                  EngineConfig(idle_timeout_ms=idle), now_ms=now)


def evs(*ts: int) -> list[dict[str, Any]]:
    return [{"ts": t, "k": "x", "v": 0} for t in ts]


def test_an_assigned_partition_holds_the_watermark_until_it_is_read() -> None:
    now = Clock()
    e = new_engine(now)
    register_partitions(e, lambda topic: "s", [("t", 0), ("t", 1)])
    e.process(evs(5000, 6000), stream="s", partition=("t", 0))
    assert e.watermark() < 0  # ("t", 1) has not been read yet: the beginning of time
    res = e.process(evs(1000), stream="s", partition=("t", 1))
    assert res.dead_letters == []  # not late: the watermark waited for it
    assert e.watermark() == 1000 - 1


def test_without_registration_the_first_partition_runs_ahead() -> None:
    now = Clock()
    e = new_engine(now)
    e.process(evs(5000, 6000), stream="s", partition=("t", 0))
    res = e.process(evs(1000), stream="s", partition=("t", 1))
    assert [d.reason for d in res.dead_letters] == ["late"]


def test_an_assigned_partition_that_stays_quiet_stops_holding_back() -> None:
    now = Clock()
    e = new_engine(now)
    register_partitions(e, lambda topic: "s", [("t", 0), ("t", 1)])
    e.process(evs(5000), stream="s", partition=("t", 0))
    now.now += 11_000
    e.process(evs(6000), stream="s", partition=("t", 0))
    assert e.watermark() == 6000 - 1


def test_registration_only_touches_clocks_of_the_streams_patterns() -> None:
    e = Engine([compile_pattern(p) for p in load_source(
        'pattern p { from s key k match a where v == 1 }\n'
        'pattern q { from other key k time when match a where v == 1 }')])
    assert register_partitions(e, lambda topic: "s", [("t", 0)]) == 1
    clocks = {c.name: set(c.partitions) for c in e.snapshot().clocks}
    assert clocks["default"] == {"t/0"} and clocks["when"] == set()


def test_restored_partitions_go_idle_after_the_idle_timeout() -> None:
    now = Clock()
    e1 = new_engine(now)
    store = MemoryStore()
    e1.process(evs(5000), stream="s", partition=("t", 0))
    e1.process(evs(9000), stream="s", partition=("t", 1))
    store.write_batch(e1.checkpoint())

    e2 = new_engine(now)
    load_engine(e2, store)  # restores both partitions and starts their idle timers
    assert e2.watermark() == 5000 - 1
    now.now += 11_000
    e2.process(evs(20_000), stream="s", partition=("t", 1))
    assert e2.watermark() == 20_000 - 1  # ("t", 0) never came back: idle, not blocking


def test_signature_changes_with_the_loaded_patterns() -> None:
    e = new_engine(Clock())
    sig = e.signature()
    e.remove("q")
    assert e.signature() != sig
