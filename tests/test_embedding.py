"""The embedding API: `import cep` and the runnable example in examples/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cep

ROOT = Path(__file__).resolve().parent.parent


def test_every_exported_name_resolves() -> None:
    assert cep.__all__ == sorted(cep._EXPORTS)
    for name in cep.__all__:
        assert getattr(cep, name) is not None, name
    assert cep.Engine.__module__ == "cep.runtime.engine"


def test_compile_run_and_read_results_through_cep() -> None:
    plans = cep.compile_source(
        'pattern pair { key user match a where kind == "a" then b where kind == "b" }')
    sink = cep.ListSink()
    driver = cep.Driver(cep.Engine(plans), [sink])
    events = [{"ts": 1, "kind": "a", "user": "u"}, {"ts": 2, "kind": "b", "user": "u"},
              {"kind": "b", "user": "u"}]
    driver.run([cep.Batch(events, [("mine", i) for i in range(3)])])  # steps, then finish
    assert [a.record["pattern"] for a in sink.alerts] == ["pair"]
    assert [d.to_json()["position"] for d in sink.dead_letters] == [["mine", 2]]


def test_the_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "embed_engine.py")],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        check=True, timeout=120,
    ).stdout.splitlines()
    assert out[-1] == "1 alert(s), 2 dead letter(s); events in: 6"
    assert out.count('ALERT card_testing c1 {"attempts":3,"amount":900.0}') == 1
    assert [line.split('"reason":"')[1].split('"')[0] for line in out
            if line.startswith("DEAD")] == ["missing_key", "missing_time"]
