"""Tiny models and manifests for the scoring tests (fitted in milliseconds)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import skops.io
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

FEATURES = [
    {"name": "amount", "type": "float"},
    {"name": "hour", "type": "int", "default": 12},
    {"name": "foreign", "type": "bool"},
]


@cache
def training_data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    hour = rng.integers(0, 24, n).astype(float)
    foreign = (rng.random(n) < 0.2).astype(float)
    y = ((amount > 60) & (foreign == 1) | (rng.random(n) < 0.05)).astype(int)
    x = np.column_stack([amount, hour, foreign])
    x_nan = x.copy()
    x_nan[::11, 0] = np.nan  # trees learn a missing-value direction
    return x_nan, y


@cache
def fitted(kind: str) -> Any:
    """A fitted estimator of `kind`: hgb, iforest, iforest10 (contamination 0.1),
    logreg, pipeline (StandardScaler + LogisticRegression), hgb_multi, hgb_str."""
    with threadpool_limits(1):  # OpenMP start-up costs more than these tiny fits
        return _fit(kind)


def _fit(kind: str) -> Any:
    x, y = training_data()
    x_filled = np.nan_to_num(x)
    if kind == "hgb":
        return HistGradientBoostingClassifier(max_iter=8, random_state=0).fit(x, y)
    if kind == "hgb_multi":
        y3 = (x_filled[:, 1] // 8).astype(int)
        return HistGradientBoostingClassifier(max_iter=4, random_state=0).fit(x, y3)
    if kind == "hgb_str":
        labels = np.where(y == 1, "fraud", "ok")
        return HistGradientBoostingClassifier(max_iter=4, random_state=0).fit(x, labels)
    if kind == "iforest":
        return IsolationForest(n_estimators=12, random_state=0).fit(x)
    if kind == "iforest10":
        return IsolationForest(n_estimators=12, contamination=0.1, random_state=0).fit(x)
    if kind == "logreg":
        return LogisticRegression(max_iter=500).fit(x_filled, y)
    if kind == "pipeline":
        return make_pipeline(StandardScaler(), LogisticRegression()).fit(x_filled, y)
    raise ValueError(kind)


@cache
def model_bytes(kind: str) -> bytes:
    data: bytes = skops.io.dumps(fitted(kind))
    return data


def manifest_dict(
    data: bytes, *, name: str = "txn_risk", output: str = "proba", **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "version": 1,
        "file": "model.skops",
        "sha256": hashlib.sha256(data).hexdigest(),
        "features": FEATURES,
        "output": output,
    }
    out.update(extra)
    return out


def manifest_bytes(data: bytes, **kw: Any) -> bytes:
    return orjson.dumps(manifest_dict(data, **kw))


def write_model_dir(root: Path, data: bytes, **kw: Any) -> Path:
    manifest = manifest_dict(data, **kw)
    directory: Path = root / manifest["name"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / manifest["file"]).write_bytes(data)
    (directory / "manifest.json").write_bytes(orjson.dumps(manifest))
    return directory


def fit(estimator: Any, *args: Any) -> Any:
    """`estimator.fit(*args)` on one thread (fast and reproducible for tiny data)."""
    with threadpool_limits(1):
        return estimator.fit(*args)
