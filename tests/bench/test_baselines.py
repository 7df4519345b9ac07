"""The hand-written matchers of `benchmarks/baselines.py` are what the engine benchmark
compares the engine with; a comparison is only honest if they find the same alerts.

- on each golden stream (tests/golden/<pattern>: hand-derived edge cases: window
  boundaries, skip pruning, held matches), each matcher gives exactly the expected
  alerts' (kind, key, window start, time);
- on a generated stream, all six give the same alerts as the engine, pattern by pattern.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cep.cli import compile_paths
from cep.runtime.engine import Engine
from cep.synth import generate

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
sys.path.insert(0, str(ROOT / "benchmarks"))

from baselines import ALL  # noqa: E402

BY_NAME = {cls.name: cls for cls in ALL}


def feed(name: str, events: list[dict[str, Any]], batch: int) -> Counter[tuple[Any, ...]]:
    m = BY_NAME[name]()
    for i in range(0, len(events), batch):
        m.feed(events[i:i + batch], i)
    m.finish()
    return Counter(m.alerts)


@pytest.mark.parametrize("name", sorted(BY_NAME))
@pytest.mark.parametrize("batch", [1, 1000])
def test_matcher_gives_the_golden_alerts(name: str, batch: int) -> None:
    events = [json.loads(x) for x in (GOLDEN / name / "events.jsonl").read_text().splitlines()
              if x.strip()]
    ts = {e["id"]: e["ts"] for e in events}
    expected = json.loads((GOLDEN / name / "expected.json").read_text())
    want = Counter(
        (a["kind"], a["key"], min(ts[i] for ids in a["events"].values() for i in ids), a["time"])
        for a in expected
    )
    assert want, "a golden file without alerts tests nothing here"
    assert feed(name, events, batch) == want


def test_matchers_agree_with_the_engine_on_generated_data() -> None:
    events = generate(60_000, seed=5, n_keys=3_000)
    engine = Engine(compile_paths([str(ROOT / "patterns" / f"{n}.cep") for n in BY_NAME]))
    records = []
    for i in range(0, len(events), 4096):
        records += [a.record for a in engine.process(events[i:i + 4096]).alerts]
    records += [a.record for a in engine.finish().alerts]
    for name in BY_NAME:
        got = Counter((r["kind"], r["key"], r["window"]["start"], r["time"])
                      for r in records if r["pattern"] == name)
        assert got, f"{name}: no alert in the generated stream; the comparison is empty"
        assert feed(name, events, 4096) == got, name
