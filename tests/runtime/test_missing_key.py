"""`missing_key` dead letters: decided by the engine, the same in every mode."""

from __future__ import annotations

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.runtime.engine import Engine, EngineConfig
from cep.runtime.keys import key_check

KEYED = """
pattern a { from s key card match x where v > 1 }
pattern b { from s key user, shop match x where v > 1 }
pattern c { from other match x where v > 1 }
"""


def engine(src: str, **config: object) -> Engine:
    return Engine([compile_pattern(p) for p in load_source(src)], EngineConfig(**config),  # type: ignore[arg-type]
                  now_ms=lambda: 2_000_000_000_000)


def plans(src: str, stream: str) -> list:
    return [p for p in map(compile_pattern, load_source(src))
            if p.streams is None or stream in p.streams]


def test_key_check_per_stream() -> None:
    check = key_check(plans(KEYED, "s"))
    assert check is not None
    assert check.keysets == [(("card",),), (("user",), ("shop",))]
    assert key_check(plans(KEYED, "nobody")) is None  # no pattern reads it
    # an unkeyed pattern reads every event of its stream: nothing is missing a key
    assert key_check(plans(KEYED, "other")) is None


def test_unkeyable_needs_every_key_set_to_fail() -> None:
    check = key_check(plans(KEYED, "s"))
    assert check is not None
    events = [{"card": "c"}, {"user": "u", "shop": "s"}, {"user": "u"}, {"card": None},
              {"card": {"x": 1}}, {"card": [1]}, {"card": float("nan")}, {"card": 0},
              {"card": False}]
    assert check.unkeyable(events) == [2, 3, 4, 5, 6]
    one = key_check(plans("pattern a { key card match x where v > 1 }", "s"))
    assert one is not None and one.unkeyable([{"card": None}, {"card": "x"}, {}]) == [0, 2]
    nested = key_check(plans("pattern a { key a.b match x where v > 1 }", "s"))
    assert nested is not None
    assert nested.unkeyable([{"a": {"b": 1}}, {"a": {"b": None}}]) == [1]


def test_missing_key_only_for_events_a_pattern_would_use() -> None:
    e = engine(KEYED)
    e.process([{"ts": 10, "v": 0, "card": "z"}], stream="s", partition=("t", 0),
              positions=[("t", 0, 0)])
    # `where v > 1`: the first event would start a match but has no key; the second is
    # irrelevant to every pattern (ignored, like the engine ignores it); the third has
    # a key; the fourth is late (at or before the watermark 9): it keeps that reason
    events = [{"ts": 11, "v": 5}, {"ts": 12, "v": 0}, {"ts": 13, "v": 5, "card": "c"},
              {"ts": 9, "v": 5}]
    pos = [("t", 0, i) for i in range(1, 5)]
    res = e.process(events, stream="s", partition=("t", 0), positions=pos)
    assert [(d.position, d.reason) for d in res.dead_letters] == [
        (("t", 0, 1), "missing_key"), (("t", 0, 4), "late")]
    assert "card" in res.dead_letters[0].detail and "user, shop" in res.dead_letters[0].detail
    # the unkeyable event still advanced the partition's watermark
    assert e.watermark() == 12


def test_no_missing_key_where_an_unkeyed_pattern_reads_the_stream() -> None:
    e = engine(KEYED)
    res = e.process([{"ts": 1, "v": 5}], stream="other", positions=[("t", 0, 0)])
    assert res.dead_letters == []


def test_patterns_with_lets_count_every_unkeyed_event() -> None:
    e = engine('pattern a { from s key card let big = v > 1 match x where big }')
    res = e.process([{"ts": 1, "v": 0}], stream="s", positions=[("t", 0, 0)])
    assert [d.reason for d in res.dead_letters] == ["missing_key"]
