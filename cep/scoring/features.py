"""Turn a batch's feature columns into the 2-D float64 array a model is called with.

Columns arrive as numpy arrays (from a columnar batch) or as sequences of Python
values (from events). Each becomes one float64 column, in manifest feature order:

- numbers as they are; `True`/`False` as 1.0/0.0;
- `None`, NaN, or a feature with no column at all: NaN, counted as *missing*;
- anything else (strings, lists, infinities, ints too large for a float): NaN,
  counted as *invalid*. Strings are never parsed: "12" is not a number here.

Conversion is per column: a numeric numpy array or a list of plain numbers converts
in one numpy call; only a column holding something else is walked value by value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cep.errors import ModelError
from cep.scoring.manifest import Feature

FloatArray = npt.NDArray[np.float64]
Column = Sequence[object] | npt.NDArray[Any]

# Types `np.array(column, dtype=float64)` converts exactly as we want (None -> NaN).
_PLAIN = frozenset(
    {int, float, bool, type(None), np.float64, np.float32, np.int64, np.int32, np.bool_}
)


@dataclass(frozen=True, slots=True)
class Matrix:
    """A batch's model input and, per feature, how many values were missing or invalid.

    `values` has shape (rows, features) and holds NaN where a value was missing or
    invalid; `nan` marks those cells.
    """

    values: FloatArray
    nan: npt.NDArray[np.bool_]
    missing: npt.NDArray[np.int64]
    invalid: npt.NDArray[np.int64]


def build_matrix(
    columns: Mapping[str, Column],
    features: Sequence[Feature],
    n_rows: int | None = None,
    model: str = "<model>",
) -> Matrix:
    """Assemble `columns` into a (rows, len(features)) float64 array in feature order."""
    names = [f.name for f in features]
    unknown = sorted(set(columns) - set(names))
    if unknown:
        raise ModelError(
            f"model {model!r} has no feature(s) {', '.join(unknown)}; its features are "
            + ", ".join(names)
        )
    n = _row_count(columns, n_rows, model)
    values = np.empty((n, len(names)), dtype=np.float64)
    missing = np.zeros(len(names), dtype=np.int64)
    invalid = np.zeros(len(names), dtype=np.int64)
    for j, name in enumerate(names):
        column = columns.get(name)
        if column is None:
            values[:, j] = np.nan
            missing[j] = n
            continue
        converted, bad = _convert(column)
        infinite = np.isinf(converted)
        if infinite.any():
            converted[infinite] = np.nan
            bad += int(infinite.sum())
        values[:, j] = converted
        invalid[j] = bad
        missing[j] = int(np.isnan(converted).sum()) - bad
    return Matrix(values, np.isnan(values), missing, invalid)


def _row_count(columns: Mapping[str, Column], n_rows: int | None, model: str) -> int:
    lengths = {name: len(column) for name, column in columns.items()}
    expected = n_rows if n_rows is not None else next(iter(lengths.values()), None)
    if expected is None:
        raise ModelError(
            f"model {model!r}: a batch with no feature columns needs n_rows to say how "
            "many rows it has"
        )
    wrong = {name: n for name, n in lengths.items() if n != expected}
    if wrong:
        detail = ", ".join(f"{name}={n}" for name, n in sorted(wrong.items()))
        raise ModelError(
            f"model {model!r}: every feature column must have {expected} rows; got {detail}"
        )
    return expected


def _convert(column: Column) -> tuple[FloatArray, int]:
    """One column as a fresh float64 array, and how many values were invalid."""
    if isinstance(column, np.ndarray):
        if column.ndim != 1:
            raise ModelError(f"a feature column must be 1-D, got shape {column.shape}")
        if column.dtype.kind in "biuf":
            return column.astype(np.float64), 0
        column = column.tolist()
    if set(map(type, column)) <= _PLAIN:
        try:
            return np.array(column, dtype=np.float64).reshape(len(column)), 0
        except OverflowError:
            pass  # an int beyond float range: find it value by value
    out = np.empty(len(column), dtype=np.float64)
    invalid = 0
    for i, value in enumerate(column):
        if value is None:
            out[i] = np.nan
        elif isinstance(value, (bool, np.bool_)):
            out[i] = 1.0 if value else 0.0
        elif isinstance(value, (int, float, np.integer, np.floating)):
            try:
                out[i] = float(value)
            except OverflowError:
                out[i] = np.nan
                invalid += 1
        else:
            out[i] = np.nan
            invalid += 1
    return out, invalid
