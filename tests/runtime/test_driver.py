"""The driver: engine, then every sink in order, then the checkpointer."""

from __future__ import annotations

import pytest

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.runtime.driver import Driver, ListSink
from cep.runtime.engine import Engine
from cep.runtime.records import Batch, DeadLetter, Result

PAIR = 'pattern pair { key user match a where kind == "a" then b where kind == "b" }'


def engine() -> Engine:
    return Engine([compile_pattern(p) for p in load_source(PAIR)], now_ms=lambda: 0)


class Log:
    def __init__(self) -> None:
        self.calls: list[str] = []


class NamedSink:
    def __init__(self, log: Log, name: str, fail: bool = False) -> None:
        self.log, self.name, self.fail = log, name, fail

    def write(self, result: Result, batch: Batch | None) -> None:
        self.log.calls.append(f"{self.name}:{len(result.alerts)}:{batch is not None}")
        if self.fail:
            raise OSError("disk full")


class Offsets:
    def __init__(self, log: Log) -> None:
        self.log = log

    def processed(self, batch: Batch) -> None:
        self.log.calls.append(f"commit:{batch.positions[-1]}")


def ev(i: int, kind: str) -> dict[str, object]:
    return {"ts": i, "kind": kind, "user": "u"}


def test_sinks_in_order_then_the_checkpointer() -> None:
    log = Log()
    d = Driver(engine(), [NamedSink(log, "one"), NamedSink(log, "two")], Offsets(log))
    d.step(Batch([ev(1, "a"), ev(2, "b"), ev(3, "x")], [("f", 1), ("f", 2), ("f", 3)]))
    assert log.calls == ["one:1:True", "two:1:True", "commit:('f', 3)"]
    log.calls.clear()
    d.tick(10)
    d.finish()
    assert log.calls == ["one:0:False", "two:0:False", "one:0:False", "two:0:False"]


def test_a_failing_sink_stops_the_step_before_the_commit() -> None:
    log = Log()
    d = Driver(engine(), [NamedSink(log, "one", fail=True), NamedSink(log, "two")],
               Offsets(log))
    with pytest.raises(OSError):
        d.step(Batch([ev(1, "a")], [("f", 1)]))
    assert log.calls == ["one:0:True"]  # neither the next sink nor the checkpointer


def test_decoder_dead_letters_and_the_engines_in_input_order() -> None:
    sink = ListSink()
    bad = DeadLetter(b"{oops", ("f", 2), "malformed", "invalid JSON")
    batch = Batch([ev(1, "a"), {"kind": "b", "user": "u"}], [("f", 1), ("f", 3)], [bad])
    Driver(engine(), [sink]).step(batch)
    assert [(d.position, d.reason) for d in sink.dead_letters] == [
        (("f", 2), "malformed"), (("f", 3), "missing_time")]
    # a batch of decode errors only never reaches the engine, and still reaches sinks
    only = ListSink()
    Driver(engine(), [only]).step(Batch(dead_letters=[bad]))
    assert only.dead_letters == [bad]
