"""The types a model file may contain. Pinned here, reviewed by hand, never computed at load.

A skops archive describes every object it holds by module and class name
(`schema.json`). Loading refuses a file that names any type outside `ALLOWED_TYPES`,
and then asks skops to load it with `trusted=SKOPS_TRUSTED`, so skops' own audit
(which also checks names that do not appear as a class, such as a random generator's
bit generator) must pass as well.

How the lists were computed (scikit-learn 1.9, skops 0.16, numpy 2.4): fit the model
kinds we support (HistGradientBoostingClassifier, IsolationForest, LogisticRegression,
and Pipeline(StandardScaler, ...) of the classifiers; binary, multiclass, int, string
and bool labels; with and without NaN), `skops.io.dumps` each one, and collect

- every `__module__.__class__` named in `schema.json` -> `MODEL_TYPES` (+ containers);
- `skops.io.get_untrusted_types(data=...)` -> `SKOPS_TRUSTED`.

`tests/scoring/test_trusted.py` repeats that computation and fails, naming the types,
when a new scikit-learn needs a different list. Review any addition: a type on this
list can be constructed from a file anyone with upload rights can write.
"""

from __future__ import annotations

# Containers and primitives as skops writes them.
BUILTIN_TYPES: frozenset[str] = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
    }
)

# numpy arrays and numeric scalars: plain data, rebuilt through numpy's own format.
NUMPY_TYPES: frozenset[str] = frozenset(
    {
        "numpy.ndarray",
        "numpy.bool",
        "numpy.bool_",
        "numpy.int8",
        "numpy.int16",
        "numpy.int32",
        "numpy.int64",
        "numpy.uint8",
        "numpy.uint16",
        "numpy.uint32",
        "numpy.uint64",
        "numpy.float16",
        "numpy.float32",
        "numpy.float64",
        # HistGradientBoosting keeps the generator it subsamples features with; skops
        # rebuilds it only from numpy's own bit generators.
        "numpy.random._generator.Generator",
    }
)

# The estimators we serve and the internal objects their fitted state holds.
MODEL_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._label.LabelEncoder",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.ensemble._iforest.IsolationForest",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
    }
)

ALLOWED_TYPES: frozenset[str] = BUILTIN_TYPES | NUMPY_TYPES | MODEL_TYPES

# What skops itself does not trust by default but our models need: the node arrays
# of decision trees. skops leaves them out because scikit-learn follows their child
# and feature indices without bounds checks; `cep.scoring.structure` checks those
# indices after loading and before the model is ever used.
SKOPS_TRUSTED: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)
