"""Scoring against labels: --label-map scores a new pattern against an existing label,
incidents count once (alerts per incident shows duplicates), labels no pattern ran
for get no rows, and --report writes the same as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from cep.backtest import format_summary, run_backtest
from cep.cli import compile_paths, main

T0 = 1_763_712_000_000
NEW = """pattern my_pairs {
  key user
  skip none
  match
    a where kind == "a"
    then b where kind == "b"
  emit { user = key }
}
"""


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "p.cep").write_text(NEW)
    rows = [
        # incident pair:1 -- `skip none` gives two alerts for it (a1 b, a2 b)
        {"user": "u1", "kind": "a", "label": "pair:1"},
        {"user": "u1", "kind": "a", "label": "pair:1"},
        {"user": "u1", "kind": "b", "label": "pair:1"},
        {"user": "u2", "kind": "a"}, {"user": "u2", "kind": "b"},  # false positive
        {"user": "u3", "kind": "a", "label": "pair:2"},  # missed
        {"user": "u4", "kind": "x", "label": "other:1"},  # a label no pattern ran for
    ]
    events = tmp_path / "ev.jsonl"
    events.write_bytes(b"".join(orjson.dumps({**r, "ts": T0 + i * 1000}) + b"\n"
                                for i, r in enumerate(rows)))
    return tmp_path / "p.cep", events


def test_label_map_scores_a_new_pattern_against_an_existing_label(
        tmp_path: Path, files: tuple[Path, Path]) -> None:
    pattern, events = files
    plain = run_backtest(compile_paths([str(pattern)]), [events], out=tmp_path / "a.jsonl",
                         label_field="label")
    assert plain.labels == {"my_pairs": {
        "label": "my_pairs", "alerts": 3, "true_positives": 0, "precision": 0.0,
        "incidents": 0, "detected": 0, "recall": None, "alerts_per_incident": None}}
    assert plain.unscored_labels == ["other", "pair"]
    mapped = run_backtest(compile_paths([str(pattern)]), [events], out=tmp_path / "a.jsonl",
                          label_field="label", label_map={"my_pairs": "pair"})
    assert mapped.labels == {"my_pairs": {
        "label": "pair", "alerts": 3, "true_positives": 2, "precision": 2 / 3,
        "incidents": 2, "detected": 1, "recall": 0.5, "alerts_per_incident": 2.0}}
    assert mapped.unscored_labels == ["other"]
    summary = format_summary(mapped)
    assert "2.00" in summary and "labels no pattern was scored against: other" in summary


def test_cli_label_map_and_report(tmp_path: Path, files: tuple[Path, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    pattern, events = files
    report = tmp_path / "report.json"
    assert main(["backtest", "--patterns", str(pattern), "--events", str(events),
                 "--out", str(tmp_path / "a.jsonl"), "--label-field", "label",
                 "--label-map", "my_pairs=pair", "--report", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["labels"]["my_pairs"]["recall"] == 0.5
    assert doc["labels"]["my_pairs"]["alerts_per_incident"] == 2.0
    assert doc["alerts"] == {"my_pairs": 3} and doc["events"] == 7
    assert main(["backtest", "--patterns", str(pattern), "--events", str(events),
                 "--label-field", "label", "--label-map", "nope=pair"]) == 1
    assert "not loaded: nope" in capsys.readouterr().err
    assert main(["backtest", "--patterns", str(pattern), "--events", str(events),
                 "--label-map", "my_pairs"]) == 1
