"""Backtests and the command line: bad input gets a clear, counted outcome."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from cep.backtest import run_backtest
from cep.cli import compile_paths, main

PATTERN = """pattern pair {
  key user
  within 1m
  match
    a where kind == "a"
    then b where kind == "b"
  emit severity high { user = key, gap = b.ts - a.ts }
}
"""


def write(path: Path, lines: list[object | bytes]) -> Path:
    with path.open("wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else orjson.dumps(line))
            f.write(b"\n")
    return path


@pytest.fixture()
def pattern_file(tmp_path: Path) -> Path:
    p = tmp_path / "pair.cep"
    p.write_text(PATTERN)
    return p


T0 = 1_763_712_000_000  # 2025-11-21T08:00:00Z: backtests refuse implausible epoch times


def ev(i: int, ts: int, kind: str, user: str = "u1", **kw: object) -> dict[str, object]:
    """An event at T0 + ts milliseconds."""
    return {"id": f"e{i}", "ts": T0 + ts, "kind": kind, "user": user, **kw}


def read_jsonl(p: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in p.read_bytes().splitlines() if x.strip()]


def test_bad_lines_become_dead_letters_with_reasons(tmp_path: Path, pattern_file: Path) -> None:
    events = write(tmp_path / "ev.jsonl", [
        ev(1, 1000, "a"),
        b"{not json",
        [1, 2, 3],
        {"id": "e4", "kind": "b", "user": "u1"},  # no time
        {"id": "e5", "ts": "yesterday", "kind": "b", "user": "u1"},  # unparseable time
        ev(6, 2000, "b"),
        b"",
    ])
    out, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    report = run_backtest(compile_paths([str(pattern_file)]), [events], out=out, dead_out=dead)
    alerts = read_jsonl(out)
    assert [a["measures"] for a in alerts] == [{"user": "u1", "gap": 1000}]
    assert report.dead_letters == {"malformed": 2, "missing_time": 1, "bad_time": 1}
    rows = read_jsonl(dead)
    assert [(r["reason"], r["position"][1]) for r in rows] == [
        ("malformed", 2), ("malformed", 3), ("missing_time", 4), ("bad_time", 5)]
    assert rows[0]["raw"] == "{not json"
    assert rows[3]["event"]["id"] == "e5"


def test_unordered_file_is_replayed_sorted_so_nothing_is_late(
    tmp_path: Path, pattern_file: Path
) -> None:
    events = write(tmp_path / "ev.jsonl", [ev(2, 5000, "b"), ev(1, 1000, "a"), ev(3, 9000, "x")])
    out = tmp_path / "alerts.jsonl"
    # disorder inside one batch is absorbed by the event heap; across batches it forces
    # the sorted replay
    report = run_backtest(compile_paths([str(pattern_file)]), [events], out=out, batch_size=1)
    assert report.mode == "sorted"
    assert not report.dead_letters
    assert [a["measures"]["gap"] for a in read_jsonl(out)] == [4000]


def test_stream_mode_marks_late_events(tmp_path: Path, pattern_file: Path) -> None:
    events = write(tmp_path / "ev.jsonl", [
        ev(1, 1000, "a"), ev(2, 9000, "x"), ev(3, 2000, "b"),  # 2000 is 7s behind the newest
        ev(4, 9500, "b"),
    ])
    out, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    plans = compile_paths([str(pattern_file)])
    tight = run_backtest(plans, [events], out=out, dead_out=dead, max_out_of_orderness_ms=1000,
                         batch_size=1)
    assert tight.dead_letters == {"late": 1}
    assert read_jsonl(dead)[0]["event"]["id"] == "e3"
    assert [a["events"]["b"][0]["id"] for a in read_jsonl(out)] == ["e4"]
    loose = run_backtest(plans, [events], out=out, max_out_of_orderness_ms=10_000, batch_size=1)
    assert not loose.dead_letters
    assert [a["events"]["b"][0]["id"] for a in read_jsonl(out)] == ["e3"]


def test_gzip_input_and_labels(tmp_path: Path, pattern_file: Path) -> None:
    rows = [
        ev(1, 1000, "a", label="pair:1"), ev(2, 2000, "b", label="pair:1"),
        ev(3, 3000, "a", user="u2"), ev(4, 4000, "b", user="u2"),  # unlabelled: false positive
        ev(5, 5000, "a", user="u3", label="pair:2"),  # missed incident
    ]
    path = tmp_path / "ev.jsonl.gz"
    with gzip.open(path, "wb") as f:
        for r in rows:
            f.write(orjson.dumps(r) + b"\n")
    report = run_backtest(compile_paths([str(pattern_file)]), [path], out=tmp_path / "a.jsonl",
                          label_field="label")
    assert report.labels == {"pair": {"label": "pair", "alerts": 2, "true_positives": 1,
                                      "precision": 0.5, "incidents": 2, "detected": 1,
                                      "recall": 0.5, "alerts_per_incident": 1.0}}


def test_alert_ids_are_deterministic(tmp_path: Path, pattern_file: Path) -> None:
    events = write(tmp_path / "ev.jsonl", [ev(1, 1000, "a"), ev(2, 2000, "b")])
    plans = compile_paths([str(pattern_file)])
    run_backtest(plans, [events], out=tmp_path / "1.jsonl")
    run_backtest(compile_paths([str(pattern_file)]), [events], out=tmp_path / "2.jsonl")
    a1, a2 = read_jsonl(tmp_path / "1.jsonl"), read_jsonl(tmp_path / "2.jsonl")
    assert a1[0]["alert_id"] == a2[0]["alert_id"]
    assert len(str(a1[0]["alert_id"])) == 32


def test_cli_check_reports_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.cep"
    bad.write_text("pattern p {\n  match\n    a where amount >\n}\n")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:1" in err or f"{bad}:3:" in err
    assert "^" in err


def test_cli_check_ok(pattern_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(pattern_file)]) == 0
    assert "pair" in capsys.readouterr().out


def test_cli_backtest_and_dis(tmp_path: Path, pattern_file: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    events = write(tmp_path / "ev.jsonl", [ev(1, 1000, "a"), ev(2, 2000, "b")])
    out = tmp_path / "alerts.jsonl"
    assert main(["backtest", "--patterns", str(pattern_file), "--events", str(events),
                 "--out", str(out)]) == 0
    assert len(read_jsonl(out)) == 1
    assert "pair" in capsys.readouterr().err
    assert main(["dis", str(pattern_file)]) == 0
    shown = capsys.readouterr().out
    assert "TAKE" in shown and "def c0(" in shown


T2_PATTERN = """pattern pair2 {
  key user
  time t2
  within 1m
  match
    a where kind == "a"
    then b where kind == "b"
  emit severity high { user = key, gap = b.t2 - a.t2 }
}
"""


def test_complete_mode_orders_by_the_patterns_time_field(tmp_path: Path) -> None:
    """A `time t2` pattern over a file ordered by neither field: the sorted replay sorts
    by t2 (the pattern's time), not by the default `ts`, so nothing is late."""
    p = tmp_path / "pair2.cep"
    p.write_text(T2_PATTERN)
    # file order and `ts` order disagree with t2 order
    events = write(tmp_path / "ev.jsonl", [
        ev(1, 1, "x", t2=T0 + 9000), ev(2, 2, "b", t2=T0 + 5000), ev(3, 3, "a", t2=T0 + 1000),
        ev(4, 4, "b", t2=T0 + 3000),
    ])
    out, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    report = run_backtest(compile_paths([str(p)]), [events], out=out, dead_out=dead,
                          batch_size=1)
    assert report.mode == "sorted"
    assert report.dead_letters == {}
    assert read_jsonl(dead) == []
    assert [a["measures"]["gap"] for a in read_jsonl(out)] == [2000]


def test_missing_key_dead_letters_from_a_backtest(tmp_path: Path, pattern_file: Path) -> None:
    """An event a pattern would start on but cannot key is a `missing_key` dead letter
    (as in Kafka mode); an unkeyed event no pattern would use is ignored."""
    events = write(tmp_path / "ev.jsonl", [
        ev(1, 1000, "a"),
        {"id": "e2", "ts": T0 + 1500, "kind": "a"},  # would start `pair`, has no user
        {"id": "e3", "ts": T0 + 1600, "kind": "x"},  # no user, irrelevant to every pattern
        ev(4, 2000, "b"),
    ])
    out, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    report = run_backtest(compile_paths([str(pattern_file)]), [events], out=out, dead_out=dead)
    assert report.dead_letters == {"missing_key": 1}
    (row,) = read_jsonl(dead)
    assert row["reason"] == "missing_key" and row["event"]["id"] == "e2"
    assert row["position"] == [str(events), 2] and "user" in row["detail"]
    assert [a["measures"]["gap"] for a in read_jsonl(out)] == [1000]
