"""Stream schemas and time units: typos and type errors get diagnostics with line and
column, schema-violating events and implausible times are dead letters that say why,
and without a schema a backtest warns about fields no event carried."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from cep.backtest import StreamsSetup, format_summary, run_backtest
from cep.cli import compile_paths, main
from cep.compiler.pipeline import compile_pattern
from cep.dsl import check, load_source, parse
from cep.errors import PatternError
from cep.runtime.engine import Engine, EngineConfig
from cep.streams import (
    Observer,
    SchemaError,
    TimeSpec,
    from_fields,
    from_json_schema,
    load_schemas_file,
    read_time,
)

T0 = 1_763_712_000_000  # 2025-11-21T08:00:00Z
TXN = from_fields("transactions", {
    "card_id": "string", "type": "string", "amount": "number", "merchant": "string?",
    "status": "string?", "ts": "integer", "geo.country": "string?",
})
SCHEMAS = {"transactions": TXN}

TYPOS = """pattern typos {
  from transactions
  key card_id
  match
    a where ammount > 500
    then b where amount > "500" and status == 1 and merchant > 3 and merchant * 2 > 1
}
"""


def codes(source: str, schemas: dict = SCHEMAS) -> list[tuple[str, int, int, str]]:
    return [(d.code, d.line, d.column, d.message) for d in check(parse(source), schemas=schemas)]


def test_typos_and_type_errors_are_diagnostics_with_line_and_column() -> None:
    found = codes(TYPOS)
    assert [(c, line, col) for c, line, col, _ in found] == [
        ("E300", 5, 13), ("E310", 6, 18), ("E311", 6, 37), ("E310", 6, 53), ("E312", 6, 70)]
    diags = check(parse(TYPOS), schemas=SCHEMAS)
    assert diags[0].hint == "did you mean `amount`?"
    assert "number with string" in diags[1].message
    # without schemas nothing is known: the same text checks clean
    assert check(parse(TYPOS)) == []


def test_fields_no_stream_has_and_header_fields() -> None:
    src = 'pattern p {\n  key crad_id\n  match a where geo.country == "FR" and geo.city == "x"\n}'
    found = codes(src)
    assert [(c, line) for c, line, _, _ in found] == [("E301", 2), ("E301", 3)]
    assert "no stream has field `crad_id`" in found[0][3]
    assert "`geo.city`" in found[1][3]


def test_stage_fields_aggregates_and_lets_are_checked_right() -> None:
    ok = """pattern ok {
  from transactions
  key card_id
  let big = amount > 100
  match
    t{3,} where type == "purchase" and amount < 2
    then b where amount > 50 * avg(t.amount) and big and merchant != last(t).merchant
  emit { card = key, n = count(t), m = b.merchant, total = sum(t.amount) + b.amount }
}"""
    assert codes(ok) == []
    bad = ok.replace("last(t).merchant", "last(t).merchnt").replace("b.merchant", "b.mrchant")
    found = codes(bad)
    assert [c for c, *_ in found] == ["E300", "E300"]


def test_a_stream_without_schema_disables_field_checks() -> None:
    src = 'pattern p { from transactions, logins  match a where whatever > 1 }'
    assert codes(src) == []


def test_load_source_refuses_with_schemas() -> None:
    with pytest.raises(PatternError) as err:
        load_source(TYPOS, "typos.cep", schemas=SCHEMAS)
    assert len(err.value.diagnostics) == 5


def test_json_schema_subset_and_violations() -> None:
    schema = from_json_schema("s", {
        "type": "object", "required": ["id"], "additionalProperties": False,
        "properties": {"id": {"type": "string"}, "n": {"type": ["integer", "null"]},
                       "geo": {"type": "object", "properties": {"lat": {"type": "number"}}}},
    })
    assert schema.violation({"id": "a", "n": 3, "geo": {"lat": 1}}) is None
    assert schema.violation({"n": 3}) == "required field 'id' is missing"
    assert schema.violation({"id": "a", "n": 1.5}) == "field 'n' is number, the schema says " \
        "integer or null"
    assert schema.violation({"id": "a", "geo": {"lat": "x"}}) == \
        "field 'geo.lat' is string, the schema says number"
    assert "not in the schema" in str(schema.violation({"id": "a", "extra": 1}))
    with pytest.raises(SchemaError, match="unknown type 'text'"):
        from_fields("s", {"a": "text"})


def test_schema_violations_are_dead_letters_in_the_engine() -> None:
    (p,) = load_source('pattern p { from transactions key card_id match a where amount > 1 }')
    cfg = EngineConfig(stream_schemas=SCHEMAS)
    engine = Engine([compile_pattern(p)], cfg, now_ms=lambda: T0 + 10**9)
    good = {"card_id": "c", "type": "purchase", "amount": 5, "ts": T0}
    res = engine.process([good, {**good, "amount": "5"}, {"type": "x", "amount": 2, "ts": T0}],
                         stream="transactions")
    assert [(d.reason, d.detail) for d in res.dead_letters] == [
        ("schema", "stream 'transactions': field 'amount' is string, the schema says number"),
        ("schema", "stream 'transactions': required field 'card_id' is missing")]
    assert len(engine.finish().alerts) == 1
    # another stream has no schema: its events are not checked
    assert engine.process([{"amount": "x", "ts": T0}], stream="logins").dead_letters == []


@pytest.mark.parametrize(("raw", "spec", "expect"), [
    (T0, TimeSpec("ms"), T0),
    (T0 // 1000, TimeSpec("s"), T0),
    (str(T0 // 1000), TimeSpec("s"), T0),
    (str(T0), TimeSpec("ms"), T0),
    (T0 * 1000, TimeSpec("us"), T0),
    ("2025-11-21T08:00:00Z", TimeSpec("iso"), T0),
    ("2025-11-21T09:00:00+01:00", TimeSpec("ms"), T0),
    ("2025-11-21T08:00:00", TimeSpec("iso", assume_utc=True), T0),
])
def test_times_in_every_unit(raw: object, spec: TimeSpec, expect: int) -> None:
    assert read_time(raw, spec) == (expect, "")


@pytest.mark.parametrize(("raw", "spec", "detail"), [
    (T0 // 1000, TimeSpec("ms"), 'it looks like epoch seconds: declare time_unit = "s"'),
    (T0 * 1000, TimeSpec("ms"), 'it looks like epoch microseconds: declare time_unit = "us"'),
    (T0, TimeSpec("s"), 'it looks like epoch milliseconds: declare time_unit = "ms"'),
    ("2025-11-21T08:00:00", TimeSpec("ms"), "has no time zone; add one (Z or +01:00) or set "
     "assume_utc = true"),
    (T0, TimeSpec("iso"), "is a number but the stream's time_unit is iso"),
    ("yesterday", TimeSpec("ms"), "is not an ISO-8601 time"),
])
def test_bad_times_say_why(raw: object, spec: TimeSpec, detail: str) -> None:
    t, why = read_time(raw, spec)
    assert t is None and detail in why


PAIR = """pattern pair {
  key user
  within 1m
  match
    a where kind == "a"
    then b where kind == "b"
  emit { user = key, gap = b.ts - a.ts }
}
"""


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_epoch_seconds_in_a_backtest_are_dead_letters_naming_the_unit(tmp_path: Path) -> None:
    (tmp_path / "pair.cep").write_text(PAIR)
    rows = [{"user": "u", "kind": "a", "ts": T0 // 1000},
            {"user": "u", "kind": "b", "ts": T0 // 1000 + 5}]
    events = write(tmp_path / "ev.jsonl", rows)
    plans = compile_paths([str(tmp_path / "pair.cep")])
    dead = tmp_path / "dead.jsonl"
    report = run_backtest(plans, [events], out=tmp_path / "a.jsonl", dead_out=dead)
    assert report.total_alerts == 0 and report.dead_letters == {"bad_time": 2}
    assert "looks like epoch seconds" in orjson.loads(dead.read_bytes().splitlines()[0])["detail"]
    # declared: the same file gives the right answer
    report = run_backtest(compile_paths([str(tmp_path / "pair.cep")]), [events],
                          out=tmp_path / "a.jsonl", streams=StreamsSetup(time=TimeSpec("s")))
    assert report.total_alerts == 1 and not report.dead_letters
    alert = orjson.loads((tmp_path / "a.jsonl").read_bytes())
    assert alert["measures"]["gap"] == 5000


def test_backtest_without_schema_warns_about_unread_fields_and_mismatches(
        tmp_path: Path) -> None:
    src = PAIR.replace('kind == "a"', 'knd == "a"').replace('kind == "b"',
                                                            'kind == "b" and n > "3"')
    (tmp_path / "pair.cep").write_text(src)
    rows = [{"user": "u", "kind": k, "n": 5, "ts": T0 + i} for i, k in enumerate("abab")]
    events = write(tmp_path / "ev.jsonl", rows)
    report = run_backtest(compile_paths([str(tmp_path / "pair.cep")]), [events],
                          out=tmp_path / "a.jsonl")
    assert report.total_alerts == 0
    assert report.missing_fields == {"pair": ["knd"]}
    summary = format_summary(report)
    assert "warning: pair reads `knd`, which no event carried" in summary
    # `n > "3"` only runs once `a` matched, which never happens with the typo: fix it
    (tmp_path / "pair.cep").write_text(src.replace("knd", "kind"))
    report = run_backtest(compile_paths([str(tmp_path / "pair.cep")]), [events],
                          out=tmp_path / "a.jsonl")
    assert report.missing_fields == {} and report.type_mismatches["pair"] >= 2
    assert "warning: pair: " in format_summary(report)


def test_infer_schema_then_check_and_validate_with_it(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pair.cep").write_text(PAIR)
    rows = [{"stream": "clicks", "user": "u", "kind": "a", "ts": T0},
            {"stream": "clicks", "user": "u", "kind": "b", "ts": T0 + 1, "extra": 1.5}]
    events = write(tmp_path / "ev.jsonl", rows)
    schema_file = tmp_path / "schema.json"
    report_file = tmp_path / "report.json"
    assert main(["backtest", "--patterns", str(tmp_path / "pair.cep"), "--events", str(events),
                 "--out", str(tmp_path / "a.jsonl"), "--infer-schema", str(schema_file),
                 "--report", str(report_file), "-q"]) == 0
    doc = json.loads(schema_file.read_text())
    clicks = doc["streams"]["clicks"]
    assert clicks["properties"]["ts"] == {"type": "integer"}
    assert clicks["properties"]["extra"] == {"type": ["null", "number"]}
    assert set(clicks["required"]) == {"kind", "stream", "ts", "user"}
    assert load_schemas_file(schema_file)["clicks"].violation(rows[1]) is None
    assert json.loads(report_file.read_text())["alerts"] == {"pair": 1}
    # the inferred schema catches a typo in cep check
    bad = tmp_path / "bad.cep"
    bad.write_text(PAIR.replace('kind == "b"', 'knd == "b"'))
    capsys.readouterr()
    assert main(["check", str(bad), "--schema", str(schema_file)]) == 1
    err = capsys.readouterr().err
    assert "bad.cep:6:18" in err and "did you mean `kind`?" in err
    assert main(["check", str(tmp_path / "pair.cep"), "--schema", str(schema_file)]) == 0
    # and violations become dead letters of reason schema
    write(events, [*rows, {"stream": "clicks", "user": 7, "kind": "a", "ts": T0 + 2}])
    report = run_backtest(compile_paths([str(tmp_path / "pair.cep")]), [events],
                          out=tmp_path / "a.jsonl",
                          streams=StreamsSetup(load_schemas_file(schema_file)))
    assert report.dead_letters == {"schema": 1}


def test_check_with_config_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cep.toml").write_text(
        '[streams.transactions]\nfields = { card_id = "string", amount = "number" }\n')
    (tmp_path / "p.cep").write_text(
        "pattern p {\n  from transactions\n  key card_id\n  match a where ammount > 500\n}\n")
    assert main(["check", str(tmp_path / "p.cep"), "--config", str(tmp_path / "cep.toml")]) == 1
    err = capsys.readouterr().err
    assert "p.cep:4:17" in err and "E300" in err and "did you mean `amount`?" in err
    assert main(["check", "--codes"]) == 0
    assert "E300" in capsys.readouterr().out


def test_observer_counts_optional_fields() -> None:
    obs = Observer(stream_field=None)
    obs.observe([{"a": 1, "b": {"c": "x"}}, {"a": 2.5}])
    (schema,) = obs.schemas().values()
    assert schema.fields["a"] == frozenset({"number"})
    assert schema.fields["b.c"] == frozenset({"string", "null"})
    assert schema.required == frozenset({"a"})
