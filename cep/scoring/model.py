"""A loaded model: a manifest plus a checked estimator, scored a batch at a time.

`Model.score_batch` makes ONE scikit-learn call per batch and returns one float64
per row. The value a row gets never depends on the batch it arrived in (tested:
`score_batch` equals `score_one` row by row, bit for bit), so replaying a stream with
other batch boundaries gives the same scores:

- tree models (HistGradientBoosting, IsolationForest) compute each row on its own;
- linear models go through BLAS, whose kernels round a single row (dot) or a ragged
  tail of rows differently from full blocks. Their batches are padded with copies of
  the last row to a multiple of `LINEAR_ROW_BLOCK` rows, which makes every row go
  through the same kernel. That is exact for binary models with few features (what
  we serve); a multiclass linear model with hundreds of features may still differ in
  the last bit between batch sizes.

Outputs (`Manifest.output`):

- `proba`: `predict_proba[:, i]`, i the column of `positive_class` (default: the last
  class, i.e. the positive class of a 0/1 or False/True target);
- `decision`: `decision_function` (for a multiclass model, the column of
  `positive_class`, which is then required);
- `anomaly` (IsolationForest only), in 0..1, higher = more anomalous. With
  `s = -score_samples(x)`, the anomaly score of the isolation forest paper
  (0 < s <= 1; about 0.5 and below is normal, near 1 is anomalous), and
  `t = -offset_`, the model's own outlier threshold (0.5 for contamination="auto"):

      anomaly = 0.5 * s / t                        if s <= t
      anomaly = 0.5 + 0.5 * (s - t) / (1 - t)      if s >  t

  A fixed, continuous, strictly increasing map of [0, 1] onto [0, 1] (the identity
  when t = 0.5), so `anomaly > 0.5` exactly when the forest's `predict` says outlier.

Missing and invalid values become NaN (`cep.scoring.features`). Models that accept
NaN (HistGradientBoosting, IsolationForest) get NaN; for the others each NaN is
replaced by the feature's `default` from the manifest.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.pipeline import Pipeline

from cep.errors import ModelError
from cep.scoring.features import Column, FloatArray, build_matrix
from cep.scoring.manifest import Manifest
from cep.scoring.structure import final_estimator

LINEAR_ROW_BLOCK = 8


class Model:
    """An immutable loaded model. Build it with `cep.scoring.loader.load_model`."""

    __slots__ = (
        "_column",
        "_defaults",
        "_estimator",
        "_linear",
        "_nan_ok",
        "_stats",
        "_threshold",
        "load_warnings",
        "manifest",
    )

    manifest: Manifest
    load_warnings: tuple[str, ...]
    _estimator: Any
    _column: int | None
    _defaults: FloatArray
    _nan_ok: bool
    _linear: bool
    _threshold: float
    _stats: _Stats

    def __init__(
        self, manifest: Manifest, estimator: Any, *, load_warnings: tuple[str, ...] = ()
    ) -> None:
        final = final_estimator(estimator)
        names_in = getattr(estimator, "feature_names_in_", None)
        if names_in is not None and tuple(names_in) != manifest.feature_names:
            raise ModelError(
                f"the model was fitted on columns {', '.join(map(str, names_in))} but the "
                f"manifest lists {', '.join(manifest.feature_names)}; list them in the "
                "same order"
            )
        column, threshold = _output_setup(manifest, estimator, final)
        init = object.__setattr__
        init(self, "manifest", manifest)
        init(self, "load_warnings", load_warnings)
        init(self, "_estimator", estimator)
        init(self, "_column", column)
        init(self, "_threshold", threshold)
        init(self, "_defaults", np.array([f.default for f in manifest.features]))
        init(self, "_nan_ok", _accepts_nan(estimator))
        init(self, "_linear", hasattr(final, "coef_"))
        init(self, "_stats", _Stats(len(manifest.features)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Model is immutable; cannot set {name!r}")

    def __repr__(self) -> str:
        m = self.manifest
        return f"<Model {m.name} v{m.version} {m.output} {type(self._estimator).__name__}>"

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.manifest.feature_names

    def score_batch(
        self, columns: Mapping[str, Column], *, n_rows: int | None = None
    ) -> FloatArray:
        """Score every row of a batch with one call into the model.

        `columns` maps feature names to equal-length columns; a feature without a
        column is missing in every row. `n_rows` is needed only when no column is
        given. Returns a float64 array with one value per row.
        """
        matrix = build_matrix(columns, self.manifest.features, n_rows, self.manifest.name)
        self._stats.add(len(matrix.values), matrix.missing, matrix.invalid)
        x = matrix.values
        if len(x) == 0:
            return np.empty(0, dtype=np.float64)
        if not self._nan_ok and matrix.nan.any():
            x = np.where(matrix.nan, self._defaults, x)
        n = len(x)
        if self._linear and n % LINEAR_ROW_BLOCK:
            pad = LINEAR_ROW_BLOCK - n % LINEAR_ROW_BLOCK
            x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
        try:
            scores = self._call(x)
        except Exception as exc:  # a fitted estimator failing on checked input is a bug
            raise ModelError(
                f"model {self.manifest.name!r} failed to score a batch of {n} rows: "
                f"{type(exc).__name__}: {exc}; reload or replace the model"
            ) from exc
        return np.ascontiguousarray(scores[:n], dtype=np.float64)

    def score_one(self, **features: object) -> float:
        """Score one row (a reference for tests): `score_batch` with a single row."""
        return float(self.score_batch({k: [v] for k, v in features.items()}, n_rows=1)[0])

    def stats(self) -> dict[str, object]:
        """Rows scored, and per feature how many values were missing or invalid."""
        return self._stats.snapshot(self.manifest.feature_names)

    def _call(self, x: FloatArray) -> FloatArray:
        est = self._estimator
        output = self.manifest.output
        if output == "proba":
            return np.asarray(est.predict_proba(x)[:, self._column], dtype=np.float64)
        if output == "decision":
            raw = np.asarray(est.decision_function(x), dtype=np.float64)
            return raw if raw.ndim == 1 else raw[:, self._column]
        s = -np.asarray(est.score_samples(x), dtype=np.float64)
        t = self._threshold
        anomaly = np.where(s <= t, 0.5 * s / t, 0.5 + 0.5 * (s - t) / (1.0 - t))
        return np.clip(anomaly, 0.0, 1.0)


def _output_setup(manifest: Manifest, estimator: Any, final: Any) -> tuple[int | None, float]:
    """The output column to take (proba/decision) or the anomaly threshold `t`."""
    output = manifest.output
    if output == "anomaly":
        if not isinstance(final, IsolationForest):
            raise ModelError(
                f"output anomaly needs an IsolationForest, the file holds "
                f"{type(final).__name__}; use output proba or decision"
            )
        return None, -float(final.offset_)
    method = "predict_proba" if output == "proba" else "decision_function"
    if not hasattr(estimator, method):
        raise ModelError(
            f"output {output} needs a model with {method}; {type(final).__name__} has none"
        )
    classes = getattr(final, "classes_", None)
    if classes is None:
        if manifest.positive_class is not None:
            raise ModelError(f"{type(final).__name__} has no classes; remove positive_class")
        return None, 0.0
    labels = list(classes.tolist())
    if len(labels) < 2:
        raise ModelError("the model was fitted on a single class; fit it on at least two")
    if manifest.positive_class is None:
        if output == "decision" and len(labels) > 2:
            raise ModelError(f"a multiclass decision needs positive_class (one of {labels})")
        return len(labels) - 1, 0.0
    matches = [i for i, label in enumerate(labels) if label == manifest.positive_class]
    if not matches:
        raise ModelError(
            f"positive_class {manifest.positive_class!r} is not one of the model's "
            f"classes {labels}; set positive_class to one of them"
        )
    if output == "decision" and len(labels) == 2 and matches[0] != 1:
        raise ModelError(
            "a binary decision_function scores the last class "
            f"{labels[1]!r}; set positive_class to it or leave it out"
        )
    return matches[0], 0.0


def _accepts_nan(estimator: Any) -> bool:
    if isinstance(estimator, Pipeline):
        return all(_accepts_nan(step) for _, step in estimator.steps)
    try:
        from sklearn.utils import get_tags
    except ImportError:  # scikit-learn < 1.6
        return bool(estimator._get_tags().get("allow_nan", False))
    return bool(get_tags(estimator).input_tags.allow_nan)


class _Stats:
    """Counters a model keeps about its inputs; the model's behaviour never reads them."""

    __slots__ = ("invalid", "lock", "missing", "rows")

    def __init__(self, n_features: int) -> None:
        self.lock = threading.Lock()
        self.rows = 0
        self.missing = np.zeros(n_features, dtype=np.int64)
        self.invalid = np.zeros(n_features, dtype=np.int64)

    def add(self, rows: int, missing: np.ndarray[Any, Any], invalid: np.ndarray[Any, Any]) -> None:
        with self.lock:
            self.rows += rows
            self.missing += missing
            self.invalid += invalid

    def snapshot(self, names: tuple[str, ...]) -> dict[str, object]:
        with self.lock:
            return {
                "rows": self.rows,
                "missing": dict(zip(names, self.missing.tolist(), strict=True)),
                "invalid": dict(zip(names, self.invalid.tolist(), strict=True)),
            }
