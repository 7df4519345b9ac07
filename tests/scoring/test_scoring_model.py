from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pytest
from scoring_helpers import fitted, manifest_dict, model_bytes
from threadpoolctl import threadpool_limits

from cep.errors import ModelError
from cep.scoring import Manifest, Model, load_model_bytes
from cep.scoring.model import LINEAR_ROW_BLOCK


def load(kind: str, **kw: Any) -> Model:
    data = model_bytes(kind)
    return load_model_bytes(data, Manifest.from_json(manifest_dict(data, **kw)), kind)


def batch(n: int = 41, seed: int = 3) -> dict[str, list[object]]:
    """Event-shaped columns: floats, ints, bools, with None, NaN and junk mixed in."""
    rng = np.random.default_rng(seed)
    amount: list[object] = list(rng.lognormal(3, 1.2, n))
    hour: list[object] = [int(h) for h in rng.integers(0, 24, n)]
    foreign: list[object] = [bool(b) for b in rng.random(n) < 0.3]
    for i in range(0, n, 7):
        amount[i] = None
    for i in range(3, n, 13):
        hour[i] = float("nan")
    for i in range(5, n, 17):
        foreign[i] = "yes"  # not a number: invalid
    amount[1] = 10**400  # too large for a float: invalid
    return {"amount": amount, "hour": hour, "foreign": foreign}


CASES = [
    ("hgb", "proba"),
    ("hgb", "decision"),
    ("hgb_multi", "proba"),
    ("hgb_str", "proba"),
    ("iforest", "anomaly"),
    ("iforest", "decision"),
    ("iforest10", "anomaly"),
    ("logreg", "proba"),
    ("logreg", "decision"),
    ("pipeline", "proba"),
]


@pytest.mark.parametrize(("kind", "output"), CASES)
def test_batch_equals_row_by_row_exactly(kind: str, output: str) -> None:
    model = load(kind, output=output)
    columns = batch()
    scores = model.score_batch(columns)
    assert scores.dtype == np.float64 and scores.shape == (41,)
    assert np.all(np.isfinite(scores))
    rows = [model.score_one(**{k: v[i] for k, v in columns.items()}) for i in range(41)]
    assert scores.tolist() == rows  # bit for bit, not approximately
    # and other splits of the same rows into batches
    for size in (3, LINEAR_ROW_BLOCK + 1):
        parts = [
            model.score_batch({k: v[i : i + size] for k, v in columns.items()})
            for i in range(0, 41, size)
        ]
        assert np.concatenate(parts).tolist() == rows


def test_proba_is_the_positive_class_column() -> None:
    x = np.array([[50.0, 3, 1], [5.0, 14, 0], [np.nan, 1, 1]])
    cols = {"amount": x[:, 0], "hour": x[:, 1], "foreign": x[:, 2]}
    assert load("hgb").score_batch(cols).tolist() == fitted("hgb").predict_proba(x)[:, 1].tolist()
    as_zero = load("hgb", positive_class=0).score_batch(cols)
    assert as_zero.tolist() == fitted("hgb").predict_proba(x)[:, 0].tolist()
    fraud = load("hgb_str", positive_class="fraud").score_batch(cols)
    classes = list(fitted("hgb_str").classes_)
    proba = fitted("hgb_str").predict_proba(x)[:, classes.index("fraud")]
    assert fraud.tolist() == proba.tolist()
    multi = load("hgb_multi", positive_class=2, output="decision").score_batch(cols)
    assert multi.tolist() == fitted("hgb_multi").decision_function(x)[:, 2].tolist()


def test_numpy_columns_and_python_lists_agree() -> None:
    model = load("hgb")
    lists: dict[str, list[object]] = {
        "amount": [10.0, None, 300.0],
        "hour": [1, 2, 3],
        "foreign": [True, False, True],
    }
    arrays = {
        "amount": np.array([10.0, np.nan, 300.0]),
        "hour": np.array([1, 2, 3], dtype=np.int32),
        "foreign": np.array([True, False, True]),
    }
    objects = {k: np.array(v, dtype=object) for k, v in lists.items()}
    expected = model.score_batch(lists).tolist()
    assert model.score_batch(arrays).tolist() == expected
    assert model.score_batch(objects).tolist() == expected


def test_missing_and_invalid_values_become_nan_and_are_counted() -> None:
    model = load("hgb")
    x = np.array([[np.nan, 2, 1], [np.nan, np.nan, 0], [7.0, 3, np.nan]])
    expected = fitted("hgb").predict_proba(x)[:, 1].tolist()
    scores = model.score_batch(
        {"amount": [None, "12", 7.0], "hour": [2, float("inf"), 3], "foreign": [True, 0, None]}
    )
    assert scores.tolist() == expected
    stats = model.stats()
    assert stats["rows"] == 3
    assert stats["missing"] == {"amount": 1, "hour": 0, "foreign": 1}
    assert stats["invalid"] == {"amount": 1, "hour": 1, "foreign": 0}


def test_an_absent_column_is_missing_in_every_row() -> None:
    model = load("hgb")
    scores = model.score_batch({"amount": [5.0, 50.0], "hour": [1, 2]})
    x = np.array([[5.0, 1, np.nan], [50.0, 2, np.nan]])
    assert scores.tolist() == fitted("hgb").predict_proba(x)[:, 1].tolist()
    assert model.stats()["missing"] == {"amount": 0, "hour": 0, "foreign": 2}
    everything_missing = model.score_batch({}, n_rows=2)
    assert everything_missing[0] == everything_missing[1]


def test_models_without_nan_support_get_the_manifest_defaults() -> None:
    model = load("pipeline")  # hour's default is 12, the others 0
    scores = model.score_batch({"amount": [None, 0.0], "hour": [None, 12], "foreign": [1, 1]})
    assert scores[0] == scores[1]
    x = np.array([[0.0, 12, 1]] * LINEAR_ROW_BLOCK)
    assert scores[0] == fitted("pipeline").predict_proba(x)[0, 1]


def test_anomaly_is_a_monotonic_0_to_1_map_with_the_forest_threshold_at_half() -> None:
    for kind in ("iforest", "iforest10"):
        model = load(kind, output="anomaly")
        forest = fitted(kind)
        rng = np.random.default_rng(5)
        x = np.column_stack([rng.lognormal(3, 2, 500), rng.integers(0, 24, 500), rng.random(500)])
        scores = model.score_batch({"amount": x[:, 0], "hour": x[:, 1], "foreign": x[:, 2]})
        assert np.all((scores >= 0) & (scores <= 1))
        raw = -forest.score_samples(x)
        order = np.argsort(raw, kind="stable")
        assert np.all(np.diff(scores[order]) >= 0)  # same order as the forest's own score
        assert np.array_equal(scores > 0.5, forest.predict(x) == -1)
    # contamination="auto": the paper's score itself
    auto = load("iforest", output="anomaly")
    x = np.array([[30.0, 12, 0], [1e6, 3, 1]])
    raw = -fitted("iforest").score_samples(x)
    got = auto.score_batch({"amount": x[:, 0], "hour": x[:, 1], "foreign": x[:, 2]})
    assert got.tolist() == raw.tolist()
    assert got[1] > got[0]


def test_empty_batch() -> None:
    out = load("hgb").score_batch({"amount": [], "hour": [], "foreign": []})
    assert out.shape == (0,) and out.dtype == np.float64


def test_rejects_unknown_features_and_ragged_columns() -> None:
    model = load("hgb")
    with pytest.raises(ModelError, match=r"has no feature\(s\) amout; its features are amount"):
        model.score_batch({"amout": [1.0]})
    with pytest.raises(ModelError, match="must have 2 rows; got hour=1"):
        model.score_batch({"amount": [1.0, 2.0], "hour": [1]})
    with pytest.raises(ModelError, match="needs n_rows"):
        model.score_batch({})
    with pytest.raises(ModelError, match="1-D"):
        model.score_batch({"amount": np.zeros((2, 2))})


def test_model_is_immutable() -> None:
    model = load("hgb")
    with pytest.raises(AttributeError, match="immutable"):
        model.manifest = model.manifest
    with pytest.raises(AttributeError):
        model.other = 1
    assert "txn_risk" in repr(model) and model.feature_names == ("amount", "hour", "foreign")


def test_concurrent_scoring_gives_the_same_answers() -> None:
    model = load("iforest", output="anomaly")
    columns = batch(200)
    expected = model.score_batch(columns).tolist()
    results: list[list[float]] = []

    def work() -> None:
        for _ in range(5):
            results.append(model.score_batch(columns).tolist())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 20
    assert model.stats()["rows"] == 200 * 21


@pytest.mark.parametrize(("kind", "output"), [("hgb", "proba"), ("iforest", "anomaly")])
def test_thread_count_does_not_change_scores(kind: str, output: str) -> None:
    model = load(kind, output=output)
    columns = batch(3000, seed=9)
    one_thread = model.score_batch(columns)
    with threadpool_limits(limits=os.cpu_count() or 2):
        every_core = model.score_batch(columns)
    assert every_core.tolist() == one_thread.tolist()
