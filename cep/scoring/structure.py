"""Checks on a loaded estimator's fitted state, made before the model is ever used.

The type allow-list (`cep.scoring.trusted`) says which classes a file may build, not
whether the numbers inside them are sane. Decision trees are the sharp edge:
scikit-learn's Cython code follows a tree's child and feature indices without bounds
checks, so a crafted file with an out-of-range index would read (or crash on) memory
outside the arrays at the first prediction. skops does not trust `Tree` and
`TreePredictor` by default for exactly that reason. We trust them only together with
this check: every internal node's children lie after it and inside the tree (so every
walk from the root ends at a leaf), and every split reads a column that exists.

Everything else the estimators index with plain numpy, which raises on a bad index
instead of reading past an array; those shapes are checked too, for a clear message.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cep.errors import ModelError

FINAL_ESTIMATORS = (HistGradientBoostingClassifier, IsolationForest, LogisticRegression)
TRANSFORMERS = (StandardScaler,)

# `TreePredictor.nodes` field layout (sklearn.ensemble._hist_gradient_boosting.common).
_PREDICTOR_FIELDS = ("left", "right", "feature_idx", "is_leaf", "is_categorical")


def final_estimator(estimator: Any) -> Any:
    """The estimator that produces the output: the last step of a pipeline, or itself."""
    if isinstance(estimator, Pipeline):
        return estimator.steps[-1][1]
    return estimator


def check_structure(estimator: Any, n_features: int) -> None:
    """Raise `ModelError` (without the file name) if `estimator` is not safe to run."""
    if isinstance(estimator, Pipeline):
        steps = estimator.steps
        if not isinstance(steps, list) or not steps:
            raise ModelError("the pipeline has no steps")
        for i, step in enumerate(steps):
            if not isinstance(step, tuple) or len(step) != 2:
                raise ModelError(f"pipeline step {i} is not a (name, estimator) pair")
            last = i == len(steps) - 1
            allowed = FINAL_ESTIMATORS if last else TRANSFORMERS
            if not isinstance(step[1], allowed):
                raise ModelError(
                    f"pipeline step {step[0]!r} is {type(step[1]).__name__}; supported "
                    + ("final steps" if last else "intermediate steps")
                    + " are "
                    + ", ".join(t.__name__ for t in allowed)
                )
            _check_one(step[1], n_features)
        return
    if not isinstance(estimator, FINAL_ESTIMATORS):
        raise ModelError(
            f"the file holds a {type(estimator).__name__}; supported models are "
            + ", ".join(t.__name__ for t in FINAL_ESTIMATORS)
            + ", optionally after StandardScaler in a Pipeline"
        )
    _check_one(estimator, n_features)


def _check_one(estimator: Any, n_features: int) -> None:
    fitted = getattr(estimator, "n_features_in_", None)
    if fitted != n_features:
        raise ModelError(
            f"{type(estimator).__name__} was fitted on {fitted} feature(s) but the "
            f"manifest lists {n_features}; list the features in the order the model "
            "was fitted on"
        )
    if isinstance(estimator, HistGradientBoostingClassifier):
        _check_hgb(estimator, n_features)
    elif isinstance(estimator, IsolationForest):
        _check_iforest(estimator, n_features)
    elif isinstance(estimator, LogisticRegression):
        _check_shape(estimator.coef_, (_n_outputs(estimator), n_features), "coef_")
        _check_shape(estimator.intercept_, (_n_outputs(estimator),), "intercept_")
    elif isinstance(estimator, StandardScaler):
        for attr in ("mean_", "scale_"):
            value = getattr(estimator, attr, None)
            if value is not None:
                _check_shape(value, (n_features,), attr)


def _n_outputs(estimator: Any) -> int:
    n_classes = len(estimator.classes_)
    return 1 if n_classes == 2 else n_classes


def _check_shape(value: Any, shape: tuple[int, ...], what: str) -> None:
    if not isinstance(value, np.ndarray) or value.shape != shape:
        got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
        raise ModelError(f"{what} has shape {got}, expected {shape}; the file is corrupt")


def _check_hgb(model: Any, n_features: int) -> None:
    categorical = getattr(model, "is_categorical_", None)
    if getattr(model, "_preprocessor", None) is not None or (
        categorical is not None and np.any(categorical)
    ):
        raise ModelError(
            "categorical features are not supported; encode them as numbers before "
            "fitting and list them as int or bool features"
        )
    per_iteration = model.n_trees_per_iteration_
    predictors = model._predictors
    if not isinstance(predictors, list) or not predictors:
        raise ModelError("the model holds no trees; fit it before saving")
    for i, iteration in enumerate(predictors):
        if not isinstance(iteration, list) or len(iteration) != per_iteration:
            raise ModelError(f"iteration {i} does not hold {per_iteration} tree(s)")
        for predictor in iteration:
            _check_predictor_nodes(predictor.nodes, n_features, f"tree {i}")


def _check_predictor_nodes(nodes: Any, n_features: int, where: str) -> None:
    if (
        not isinstance(nodes, np.ndarray)
        or nodes.ndim != 1
        or nodes.dtype.names is None
        or any(f not in nodes.dtype.names for f in _PREDICTOR_FIELDS)
        or len(nodes) == 0
    ):
        raise ModelError(f"{where}: the node array is malformed; the file is corrupt")
    internal = nodes["is_leaf"] == 0
    if np.any(nodes["is_categorical"][internal] != 0):
        raise ModelError(f"{where}: categorical splits are not supported")
    index = np.arange(len(nodes))[internal]
    _check_links(
        index,
        nodes["left"][internal].astype(np.int64),
        nodes["right"][internal].astype(np.int64),
        nodes["feature_idx"][internal].astype(np.int64),
        len(nodes),
        n_features,
        where,
    )


def _check_iforest(model: Any, n_features: int) -> None:
    trees = model.estimators_
    features = model.estimators_features_
    if not isinstance(trees, list) or not trees:
        raise ModelError("the model holds no trees; fit it before saving")
    if not isinstance(features, list) or len(features) != len(trees):
        raise ModelError("estimators_features_ does not match estimators_; the file is corrupt")
    offset = model.offset_
    if not isinstance(offset, (int, float, np.floating)) or not -1.0 < float(offset) < 0.0:
        raise ModelError(f"offset_ is {offset!r}; an IsolationForest's offset lies in (-1, 0)")
    for i, (tree, columns) in enumerate(zip(trees, features, strict=True)):
        where = f"tree {i}"
        columns = np.asarray(columns)
        if (
            columns.ndim != 1
            or columns.dtype.kind not in "iu"
            or (len(columns) and (columns.min() < 0 or columns.max() >= n_features))
        ):
            raise ModelError(f"{where}: its feature subset is out of range")
        _check_tree(tree, len(columns), where)
        for attr in ("_decision_path_lengths", "_average_path_length_per_tree"):
            per_node = getattr(model, attr)[i]
            if not isinstance(per_node, np.ndarray) or per_node.shape != (tree.tree_.node_count,):
                raise ModelError(f"{where}: {attr} does not match the tree; corrupt file")


def _check_tree(estimator: Any, n_features: int, where: str) -> None:
    """A `sklearn.tree._tree.Tree` wrapped by a fitted DecisionTree*/ExtraTree*."""
    tree = estimator.tree_
    if estimator.n_features_in_ != n_features or tree.n_features != n_features:
        raise ModelError(f"{where}: fitted on a different number of features")
    count = tree.node_count
    if not 0 < count <= tree.capacity:
        raise ModelError(f"{where}: node count {count} is out of range; corrupt file")
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    feature = np.asarray(tree.feature, dtype=np.int64)
    leaf = (left == -1) & (right == -1)
    if np.any((left == -1) != (right == -1)):
        raise ModelError(f"{where}: a node has only one child; the file is corrupt")
    index = np.arange(count)[~leaf]
    _check_links(index, left[~leaf], right[~leaf], feature[~leaf], count, n_features, where)


def _check_links(
    index: np.ndarray[Any, Any],
    left: np.ndarray[Any, Any],
    right: np.ndarray[Any, Any],
    feature: np.ndarray[Any, Any],
    count: int,
    n_features: int,
    where: str,
) -> None:
    """Children after their parent and inside the tree; split features in range."""
    if np.any((left <= index) | (left >= count) | (right <= index) | (right >= count)):
        raise ModelError(
            f"{where}: a node's child index is out of range; the file is corrupt or "
            "was crafted (refusing it: scikit-learn would read outside the tree)"
        )
    if np.any((feature < 0) | (feature >= n_features)):
        raise ModelError(
            f"{where}: a split reads feature index outside 0..{n_features - 1}; the "
            "file is corrupt or was crafted"
        )
