"""Scoring without thread storms (issue 11, item 5):

- the engine itself limits BLAS/OpenMP thread pools while a model scores
  (`EngineConfig.scoring_threads`, default 1) and restores them afterwards;
- scikit-learn and skops are imported only when a loaded pattern scores;
- patterns that score the same model with the same features in one batch share one
  model call, and get the same scores (and alerts) as when each runs alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from threadpoolctl import ThreadpoolController

from cep.cli import compile_paths, compile_scoring, load_models, scorer_for
from cep.runtime.engine import Engine, EngineConfig
from cep.scoring.threads import ThreadLimit
from cep.synth import generate, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
RISKY = (ROOT / "patterns" / "risky_burst.cep").read_text()


def _threads_now() -> set[int]:
    return {lib.num_threads for lib in ThreadpoolController().lib_controllers
            if lib.user_api in ("openmp", "blas")}


@pytest.fixture(scope="module")
def registry() -> Any:
    reg = load_models(ROOT / "models")
    assert reg is not None
    return reg


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return generate(20_000, seed=3)


def _run(plans: list[Any], scorer: Any, events: list[dict[str, Any]],
         config: EngineConfig | None = None) -> tuple[Engine, list[dict[str, Any]]]:
    engine = Engine(plans, config, scorer=scorer)
    records = []
    for i in range(0, len(events), 4096):
        records += [a.record for a in engine.process(events[i:i + 4096]).alerts]
    records += [a.record for a in engine.finish().alerts]
    for r in records:
        r.pop("detected_at")
    return engine, records


@pytest.mark.parametrize("threads", [1, 3])
def test_engine_limits_thread_pools_while_scoring(
    registry: Any, events: list[dict[str, Any]], threads: int
) -> None:
    score = scorer_for(registry)
    seen: list[set[int]] = []

    def recording(model: str, columns: dict[str, list[Any]]) -> Any:
        seen.append(_threads_now())
        return score(model, columns)

    with ThreadpoolController().limit(limits=2):  # what the process runs with otherwise
        plans = compile_paths([str(ROOT / "patterns" / "risky_burst.cep")], registry)
        engine, _ = _run(plans, recording, events, EngineConfig(scoring_threads=threads))
        after = _threads_now()
    assert seen and all(s == {threads} for s in seen), seen
    assert after == {2}  # restored after each call
    assert engine.snapshot().counters["score_calls"] == len(seen)


def test_thread_limit_none_leaves_pools_alone() -> None:
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime)

    with ThreadpoolController().limit(limits=2):
        with ThreadLimit(None):
            assert _threads_now() == {2}
        with ThreadLimit(1):
            assert _threads_now() == {1}
        assert _threads_now() == {2}
    with pytest.raises(ValueError, match="at least 1"):
        ThreadLimit(0)


def _imports_after_backtest(tmp_path: Path, pattern: str) -> str:
    events = tmp_path / "events.jsonl"
    write_jsonl(events, generate(2_000, seed=1))
    code = (
        "import sys\n"
        "from cep.cli import main\n"
        f"rc = main(['backtest', '--patterns', {pattern!r}, '--events', {str(events)!r},"
        f" '--out', {str(tmp_path / 'a.jsonl')!r}, '-q', '--models', "
        f"{str(ROOT / 'models')!r}])\n"
        "print(rc, 'sklearn' in sys.modules, 'skops' in sys.modules, "
        "'threadpoolctl' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return out.stdout.strip().splitlines()[-1]


def test_sklearn_is_imported_only_when_a_pattern_scores(tmp_path: Path) -> None:
    plain = str(ROOT / "patterns" / "card_testing.cep")
    scoring = str(ROOT / "patterns" / "risky_burst.cep")
    assert _imports_after_backtest(tmp_path, plain) == "0 False False False"
    assert _imports_after_backtest(tmp_path, scoring) == "0 True True True"


def test_a_model_that_fails_to_load_names_the_patterns_using_it(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "txn_risk").mkdir(parents=True)
    src = ROOT / "models" / "txn_risk"
    (models / "txn_risk" / "manifest.json").write_bytes((src / "manifest.json").read_bytes())
    manifest = orjson.loads((src / "manifest.json").read_bytes())
    (models / "txn_risk" / manifest["file"]).write_bytes(b"not the model")
    from cep.errors import ModelError

    with pytest.raises(ModelError, match=r"txn_risk.*scored by pattern risky_burst.*sha256"):
        compile_scoring([str(ROOT / "patterns" / "risky_burst.cep")], models)
    # a pattern that does not score runs without touching the broken model
    plans, scorer = compile_scoring([str(ROOT / "patterns" / "card_testing.cep")], models)
    assert [p.name for p in plans] == ["card_testing"] and scorer is None


def test_patterns_scoring_the_same_model_share_one_call(
    registry: Any, events: list[dict[str, Any]], tmp_path: Path
) -> None:
    # a second pattern: the same score(...) features, another threshold and name
    twin = RISKY.replace("pattern risky_burst", "pattern risky_twin").replace(
        "risk > 0.9", "risk > 0.5")
    (tmp_path / "twin.cep").write_text(twin)
    score = scorer_for(registry)
    calls: list[int] = []

    def counting(model: str, columns: dict[str, list[Any]]) -> Any:
        calls.append(len(next(iter(columns.values()))))
        return score(model, columns)

    both = compile_paths([str(ROOT / "patterns" / "risky_burst.cep"),
                          str(tmp_path / "twin.cep")], registry)
    engine, together = _run(both, counting, events)
    n_batches = -(-len(events) // 4096)
    assert len(calls) <= n_batches  # one call per batch for both patterns
    assert engine.snapshot().counters["score_calls"] == len(calls)

    alone: list[dict[str, Any]] = []
    rows_alone = 0
    for plan in both:
        calls.clear()
        _, records = _run([plan], counting, events)
        rows_alone += sum(calls)
        alone += records
    key = orjson.dumps
    assert sorted(map(key, together)) == sorted(map(key, alone))
    assert {r["pattern"] for r in together} == {"risky_burst", "risky_twin"}
    assert engine.snapshot().counters["score_rows"] == rows_alone  # the same rows, in fewer calls
