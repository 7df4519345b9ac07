"""The backtest's progress bar: percent and ETA when the input size is known; no
colour codes when the output is not a terminal."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import pytest

from cep.backtest import _Progress, input_size


def test_input_size_is_known_for_plain_files_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"x" * 100)
    b.write_bytes(b"y" * 50)
    assert input_size([a, b]) == 150
    gz = tmp_path / "c.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write(b"z")
    assert input_size([a, gz]) is None
    assert input_size(["-"]) is None
    assert input_size([tmp_path / "missing.jsonl"]) is None


def test_progress_shows_percent_without_colour_off_a_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = _Progress(True, 1000)
    bar.update(500, 10, 1)
    bar.update(1000, 20, 2, force=True)
    bar.done()
    text = err.getvalue()
    assert "100%" in text and "ETA" in text and "20 events" in text
    assert "\x1b[" not in text  # no colour (nor cursor codes) when not a terminal


def test_progress_off_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bar = _Progress(False, 1000)
    bar.update(1000, 20, 2, force=True)
    bar.done()
    assert err.getvalue() == ""
