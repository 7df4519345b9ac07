"""`benchmarks/matcher_replay.py` times the matcher step on the calls an engine run
made; its figures mean something only if the replay finds what the engine found."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from cep.cli import compile_paths
from cep.runtime.engine import Engine
from cep.synth import generate

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from matcher_replay import record, replay  # noqa: E402


@pytest.mark.parametrize("name", ["impossible_travel", "decline_burst", "abandoned_checkout"])
def test_replay_finds_the_engines_matches_and_timeouts(name: str) -> None:
    events = generate(20_000, seed=3, n_keys=1_000)
    batches = [events[i:i + 4096] for i in range(0, len(events), 4096)]
    (plan,) = compile_paths([str(ROOT / "patterns" / f"{name}.cep")])
    engine = Engine([plan])
    alerts = [a for b in batches for a in engine.process(b).alerts] + engine.finish().alerts
    calls = record(plan, batches)
    assert calls and alerts, "an empty comparison tests nothing"
    outs = replay(plan, calls)[1]
    if plan.emit is None:  # completed matches make no alert (a timeout-only pattern)
        del outs["match"]
    assert outs == Counter(a.record["kind"] for a in alerts)
