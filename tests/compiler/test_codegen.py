"""Generated code: deterministic, fenced in, three-valued, and traceable to the pattern."""

from __future__ import annotations

import pytest

from cep.compiler import env
from cep.compiler.pipeline import compile_pattern
from cep.dsl.parser import parse
from cep.runtime.engine import Engine


def plan_of(text: str, version: int = 1):
    return compile_pattern(parse(text).patterns[0], version)


def cond(plan, i: int = 0):
    return plan.conds[i]


SRC = """pattern p {
  key card_id
  within 10m
  match
    tiny{3,} where type == "purchase" and amount < 2.00
    then big where type == "purchase" and amount > 50 * avg(tiny.amount)
               and merchant in ["a", "b"] and lower(merchant) matches "^[ab]$"
  emit { n = count(tiny), total = sum(tiny.amount), m = big.merchant }
}"""


def test_same_pattern_gives_byte_identical_source() -> None:
    a, b = plan_of(SRC), plan_of(SRC)
    assert a.module.source == b.module.source
    assert a.module.filename == b.module.filename


def test_generated_module_has_no_builtins() -> None:
    plan = plan_of(SRC)
    assert plan.module.namespace["__builtins__"] == {}
    # every global the generated code uses is one of the env helpers or its own
    allowed = set(env.make_namespace()) | {f"c{i}" for i in range(10)}
    for name in ("c0", "c1", "prefilter", "emit"):
        code = plan.module.namespace[name].__code__
        assert set(code.co_names) - {"get", "append", "__class__", "ev", "data", "ts", "stage"} <= (
            allowed | set(plan.module.namespace)
        )


def test_hostile_string_literal_stays_a_string(tmp_path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"__import__('os').system('touch {marker}')"
    plan = plan_of('pattern p { match a where name == "' + hostile + '" }')
    c = cond(plan)
    assert c({"name": hostile}, 0, None, None, None) is True
    assert c({"name": "x"}, 0, None, None, None) is False
    assert not marker.exists()
    assert repr(hostile) in plan.module.source


def test_field_names_never_become_identifiers() -> None:
    plan = plan_of('pattern p { match a where amount > 1 and geo.country == "FR" }')
    src = plan.module.source
    assert "d.get('amount')" in src
    assert "_path(d, ('geo', 'country'))" in src
    assert " amount " not in src.replace("'amount'", "")


@pytest.mark.parametrize(
    ("expr", "event", "expected"),
    [
        ("amount > 5", {"amount": 7}, True),
        ("amount > 5", {}, False),
        ("not (amount > 5)", {}, False),  # absence never turns into a match
        ("not (amount > 5)", {"amount": 3}, True),
        ("not exists(amount)", {}, True),
        ("exists(amount)", {"amount": None}, False),
        ("amount > 5 or kind == \"x\"", {"kind": "x"}, True),
        ("not (amount > 5 and kind == \"x\")", {"kind": "y"}, True),  # FALSE and UNKNOWN
        ("not (amount > 5 or kind == \"x\")", {"kind": "y"}, False),  # UNKNOWN
        ("amount > 5", {"amount": "abc"}, False),  # type mismatch: false
        ("not (amount > 5)", {"amount": "abc"}, False),
        ("kind != \"x\"", {}, False),
        ("kind not in [\"a\", \"b\"]", {"kind": "c"}, True),
        ("kind not in [\"a\", \"b\"]", {}, False),
        ("amount / 0 > 1", {"amount": 3}, False),
        ("if(amount > 5, \"big\", \"small\") == \"small\"", {"amount": 1}, True),
        ("coalesce(missing, 3) == 3", {}, True),
        ("name matches \"^ca.*t$\"", {"name": "cart"}, True),
        ("name starts with \"ca\" and name ends with \"rt\"", {"name": "cart"}, True),
        ("tags contains \"vip\"", {"tags": ["vip", "x"]}, True),
    ],
)
def test_three_valued_logic(expr: str, event: dict, expected: bool) -> None:
    plan = plan_of(f"pattern p {{ match a where {expr} }}")
    assert cond(plan)(event, 0, None, None, None) is expected


def test_type_mismatch_is_unknown_not_an_error() -> None:
    plan = plan_of("pattern p { match a where amount > 5 }")
    assert env.gt("abc", 5) is None
    assert cond(plan)({"amount": "abc"}, 0, None, None, None) is False


def test_error_in_generated_code_points_to_the_pattern_line() -> None:
    text = (
        'pattern p {\n  match\n    a where name == "a"\n'
        "    then b where distance_km(lat, lon, 1, 2) > 3\n}"
    )
    plan = plan_of(text)
    ns = plan.module.namespace

    def boom(*_a: object) -> None:
        raise RuntimeError("boom")

    ns["_distance_km"] = boom
    with pytest.raises(RuntimeError) as info:
        plan.conds[1]({"lat": 1, "lon": 2}, 0, None, None, None)
    line, what = plan.module.locate(info.value)
    assert line == 4
    assert "condition of b" in what
    err = plan.module.error(info.value, "p")
    assert ":4:" in str(err) and "RuntimeError" in str(err)


def test_engine_survives_a_raising_condition() -> None:
    plan = plan_of('pattern p { skip none match a where name == "a" then b where len(name) > 0 }')
    plan.module.namespace["_strlen"] = lambda _x: 1 / 0
    eng = Engine([plan], now_ms=lambda: 0)
    res = eng.process([{"name": "a", "ts": 1}, {"name": "b", "ts": 2}, {"name": "x", "ts": 3}])
    res.extend(eng.finish())
    assert res.alerts == []
    assert eng.snapshot().counters.get("condition_errors", 0) >= 1


def test_when_reads_measures_by_name() -> None:
    text = """pattern p {
      skip none
      match r{2} where kind == "r"
      emit when total > 10 { total = sum(r.amount), n = count(r) }
    }"""
    plan = plan_of(text)
    eng = Engine([plan], now_ms=lambda: 0)
    evs = [{"kind": "r", "amount": a, "ts": i} for i, a in enumerate([4, 5, 6, 7], 1)]
    res = eng.process(evs)
    res.extend(eng.finish())
    # pairs (4,5)=9 filtered; (5,6)=11 and (6,7)=13 pass
    assert [a.record["measures"]["total"] for a in res.alerts] == [11, 13]
    assert eng.snapshot().counters.get("filtered.p", 0) == 1
