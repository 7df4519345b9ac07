"""The shipped example models through the engine: `risky_burst` (`let risk =
score(txn_risk, ...)`) backtested over generated data.

- the backtest is deterministic: two runs write the same alerts;
- it finds the injected `risky_burst` incidents (recall from the labels);
- batched `let` scoring equals per-row `Model.score_one`: the engine's scorer is called
  once per batch with many rows, each result equals scoring that row alone, and each
  alert's `peak = max(r.risk)` equals the per-row scores of its events.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from threadpoolctl import threadpool_limits

from cep.backtest import run_backtest
from cep.cli import compile_paths, load_models, scorer_for
from cep.runtime.engine import Engine
from cep.synth import generate, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
PATTERN = ROOT / "patterns" / "risky_burst.cep"
N_EVENTS, SEED = 60_000, 11  # ~17 injected risky_burst incidents
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def registry() -> Iterator[Any]:
    reg = load_models(ROOT / "models")
    assert reg is not None and {"txn_risk", "txn_anomaly"} <= set(reg.names())
    # one OpenMP thread (as in conftest.py), set again now that loading the models has
    # loaded scikit-learn's OpenMP runtime: threadpoolctl limits only loaded libraries
    with threadpool_limits(limits=1):
        yield reg


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return generate(N_EVENTS, seed=SEED)


@pytest.fixture(scope="module")
def events_file(events: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scoring-engine") / "events.jsonl"
    write_jsonl(path, events)
    return path


def features(event: dict[str, Any]) -> dict[str, Any]:
    """What risky_burst passes to the model, computed here independently of the engine."""
    return {
        "amount": event["amount"],
        "hour": event["ts"] // HOUR_MS % 24,
        "foreign": event["country"] != event["home_country"],
    }


def backtest(registry: Any, events_file: Path, out: Path) -> tuple[Any, list[dict[str, Any]]]:
    plans = compile_paths([str(PATTERN)], registry)
    report = run_backtest(
        plans, [events_file], out=out, label_field="label", scorer=scorer_for(registry)
    )
    alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    return report, alerts


def test_backtest_is_deterministic_and_finds_the_incidents(
    registry: Any, events_file: Path, tmp_path: Path
) -> None:
    first, alerts1 = backtest(registry, events_file, tmp_path / "a1.jsonl")
    second, alerts2 = backtest(registry, events_file, tmp_path / "a2.jsonl")
    for a in alerts1 + alerts2:
        a.pop("detected_at")  # wall-clock time of detection, the only varying field
    assert alerts1, "risky_burst raised no alert"
    assert alerts1 == alerts2
    assert first.alerts == second.alerts
    assert first.engine_metrics.get("scoring_errors", 0) == 0

    assert first.labels is not None
    stats = first.labels["risky_burst"]
    assert stats["incidents"] >= 10, stats
    assert stats["recall"] >= 0.9, stats
    assert stats["precision"] >= 0.9, stats


def test_batched_let_scores_equal_per_row(registry: Any, events: list[dict[str, Any]]) -> None:
    calls: list[tuple[str, list[str], list[tuple[Any, ...]], list[float]]] = []
    score = scorer_for(registry)

    def recording(model: str, columns: dict[str, list[Any]]) -> Any:
        result = list(score(model, columns))
        names = list(columns)
        rows = list(zip(*columns.values(), strict=True))
        calls.append((model, names, rows, result))
        return result

    engine = Engine(compile_paths([str(PATTERN)], registry), scorer=recording)
    alerts = []
    for i in range(0, len(events), 4096):
        alerts += engine.process(events[i:i + 4096]).alerts
    alerts += engine.finish().alerts

    model = registry.get("txn_risk")
    # batched: one call per batch, far fewer calls than scored rows
    rows = sum(len(c[2]) for c in calls)
    assert rows > 10_000
    assert len(calls) <= len(events) // 4096 + 1
    assert {c[0] for c in calls} == {"txn_risk"}

    # the features the engine hands over are those of the pattern's transactions, in order
    purchases = [e for e in events if e["stream"] == "transactions" and "card_id" in e]
    handed = [dict(zip(c[1], row, strict=True)) for c in calls for row in c[2]]
    assert handed == [features(e) for e in purchases]

    # each batched result equals scoring the row alone (bit for bit); a sample of rows,
    # including every row with a high score
    results = [x for c in calls for x in c[3]]
    sample = set(range(0, len(handed), 53)) | {i for i, x in enumerate(results) if x > 0.9}
    for i in sorted(sample):
        assert results[i] == model.score_one(**handed[i]), (i, handed[i])

    # and what the pattern reads as `risk` is that score: peak = max(r.risk)
    assert alerts
    for alert in alerts:
        record = alert.record
        expected = max(model.score_one(**features(e)) for e in record["events"]["r"])
        assert record["measures"]["peak"] == expected
