"""The generated NFA step (`feed`, cep/compiler/stepgen.py): conditions written into
it still mean what their own functions mean, errors in them still point to their
pattern line, and a stage's event is found whether or not it heads the path."""

from __future__ import annotations

import pytest

from cep.compiler.pipeline import compile_pattern
from cep.dsl.parser import parse
from cep.runtime.matcher import Ev, Node, Run

TRAVEL = """pattern p {
  key card
  match
    a where channel == "pos"
    then b where channel == "pos" and country != a.country
           and distance_km(a.lat, a.lon, lat, lon) / ((ts - a.ts) / 1h + 0.01) > 900
}"""


def plan_of(text: str):
    return compile_pattern(parse(text).patterns[0])


def feed_of(plan):
    return plan.bind_steps(Run, Node)


def ev(ts: int, seq: int, **data: object) -> Ev:
    return Ev(ts, seq, dict(data), None, None)


def test_conditions_are_written_in_except_aggregates() -> None:
    src = plan_of(TRAVEL).module.source
    feed = src[src.index("def feed"):]
    assert "c0(" not in feed and "c1(" not in feed
    agg = plan_of('pattern p { match a{2} where x > 0 then b where x > sum(a.x) }')
    src = agg.module.source
    # the aggregate's comprehension stays in its own function
    assert "c1(d, ts, key, lets, path)" in src[src.index("def feed"):]


def test_written_in_conditions_decide_as_their_functions() -> None:
    plan = plan_of(TRAVEL)
    feed = feed_of(plan)
    a = ev(0, 1, channel="pos", country="DE", lat=52.5, lon=13.4)
    near = ev(3_600_000, 2, channel="pos", country="FR", lat=48.9, lon=2.35)  # ~880 km/h
    far = ev(3_600_000, 3, channel="pos", country="US", lat=40.7, lon=-74.0)
    for b, expected in ((near, False), (far, True)):
        run = Run(1, Node(0, a, None), a.ts, a.seq, a.ts, 1)
        out: list[Run] = []
        fin: list[Run] = []
        feed([run], b, "k", out, fin, False)
        assert plan.conds[1](b.data, b.ts, "k", None, run.path) is expected
        assert (len(fin), len(out)) == ((1, 0) if expected else (0, 1))
        if expected:  # the run itself moved on to the final state
            (m,) = fin
            assert m is run and m.n == 2 and m.time == b.ts
            assert [n.ev for n in (m.path, m.path.prev)] == [b, a]


def test_error_in_a_written_in_condition_points_to_its_line() -> None:
    plan = plan_of(TRAVEL)
    feed = feed_of(plan)

    def boom(*_a: object) -> None:
        raise RuntimeError("boom")

    plan.module.namespace["_distance_km"] = boom
    a = ev(0, 1, channel="pos", country="DE", lat=1.0, lon=2.0)
    b = ev(10, 2, channel="pos", country="FR", lat=3.0, lon=4.0)
    with pytest.raises(RuntimeError) as info:
        feed([Run(1, Node(0, a, None), 0, 1, 0, 1)], b, "k", [], [], False)
    assert plan.module.locate(info.value) == (5, "condition of b")


def test_stage_times_with_the_stage_absent_or_deeper_in_the_path() -> None:
    plan = plan_of("""pattern p {
      match a where x == 1 then b where x == 2 then c where ts - a.ts <= 5
    }""")
    c = plan.conds[2]
    a, b = ev(10, 1, x=1), ev(12, 2, x=2)
    path = Node(1, b, Node(0, a, None))  # `a` is not the head: found by walking back
    assert c({}, 15, None, None, path) is True
    assert c({}, 16, None, None, path) is False
    assert c({}, 15, None, None, Node(0, a, None)) is True  # `a` heads the path
    assert c({}, 15, None, None, None) is False  # no `a`: unknown, not an error
