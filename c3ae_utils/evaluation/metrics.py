"""Pure metrics of predicted ages: MAE, cumulative score, bias, bin confusion, grouped errors.

NumPy and pandas only: every function takes ages in years (array-likes `[n]`) or a table
of them, and nothing here loads a model or reads a file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from c3ae_utils import age_encoding

THETAS: tuple[int, ...] = tuple(range(11))  # CS(theta) for theta = 0..10 years
POSE_EDGES: tuple[float, ...] = (0.0, 10.0, 20.0, 30.0, 45.0)  # |angle| groups, degrees


def _paired(true_ages: ArrayLike, predicted_ages: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 `[n]`; ValueError when empty, of different length or not finite."""
    true = np.asarray(true_ages, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted_ages, dtype=np.float64).reshape(-1)
    if true.size != predicted.size:
        raise ValueError(
            f"true_ages has {true.size} values but predicted_ages has {predicted.size}; "
            "pass one prediction per face."
        )
    if true.size == 0:
        raise ValueError("No ages to compare: the selection is empty (check the split name).")
    if not (np.all(np.isfinite(true)) and np.all(np.isfinite(predicted))):
        raise ValueError("Ages must be finite; drop NaN/infinite rows before computing metrics.")
    return true, predicted


def mean_absolute_error(true_ages: ArrayLike, predicted_ages: ArrayLike) -> float:
    """MAE in years: mean of |predicted - true| over `[n]` ages."""
    true, predicted = _paired(true_ages, predicted_ages)
    return float(np.mean(np.abs(predicted - true)))


def cumulative_score(
    true_ages: ArrayLike, predicted_ages: ArrayLike, thetas: Iterable[float] = THETAS
) -> np.ndarray:
    """CS(theta): fraction of faces with |predicted - true| <= theta, float64 `[len(thetas)]`.

    Non-decreasing in theta when `thetas` is sorted, and at most 1.
    """
    true, predicted = _paired(true_ages, predicted_ages)
    limits = np.asarray(list(thetas), dtype=np.float64)
    if limits.size == 0 or np.any(limits < 0):
        raise ValueError(f"thetas must be a non-empty list of years >= 0 (got {limits.tolist()}).")
    errors = np.abs(predicted - true)
    # A tiny tolerance so that a float32 prediction of 31.999999 counts within 0 years of 32.
    return np.mean(errors[None, :] <= limits[:, None] + 1e-6, axis=1)


def age_groups(ages: ArrayLike) -> pd.Categorical:
    """Label ages (years) by decade (`age_encoding.decade`): "0-9", "10-19", ..., "90+"."""
    return pd.Categorical.from_codes(
        age_encoding.decade(ages), categories=age_encoding.decade_labels(), ordered=True
    )


def pose_groups(angles: ArrayLike, edges: Sequence[float] = POSE_EDGES) -> pd.Categorical:
    """Label pose angles (degrees) by |angle|: "0-10", "10-20", ..., "45+" with the default edges."""
    values = np.abs(np.asarray(angles, dtype=np.float64).reshape(-1))
    labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)] + [f"{edges[-1]:g}+"]
    codes = np.searchsorted(np.asarray(edges[1:], dtype=np.float64), values, side="right")
    codes = np.where(np.isfinite(values), codes, -1)  # unknown pose -> missing group
    return pd.Categorical.from_codes(codes, categories=labels, ordered=True)


def grouped_errors(
    table: pd.DataFrame,
    by: str | ArrayLike,
    true_column: str = "age",
    predicted_column: str = "predicted_age",
) -> pd.DataFrame:
    """Errors per group: one row per group (missing group labels are left out).

    `by` is a column of `table` or one label per row. Columns: `count`, `mae` (years),
    `bias` (mean of predicted - true, years), `std` (of the signed error), `mean_age`.
    Empty groups of a categorical key are dropped.
    """
    if true_column not in table or predicted_column not in table:
        raise ValueError(
            f"table needs the columns {true_column!r} and {predicted_column!r}; "
            f"it has {list(table.columns)}."
        )
    keys = table[by] if isinstance(by, str) else pd.Series(np.asarray(by), index=table.index)
    if len(keys) != len(table):
        raise ValueError(f"`by` has {len(keys)} labels for {len(table)} rows.")
    true = table[true_column].to_numpy(dtype=np.float64)
    signed = table[predicted_column].to_numpy(dtype=np.float64) - true
    frame = pd.DataFrame({"key": keys.to_numpy(), "error": signed, "abs_error": np.abs(signed), "age": true})
    grouped = frame.groupby("key", observed=True, dropna=True, sort=True)
    result = pd.DataFrame(
        {
            "count": grouped["error"].size(),
            "mae": grouped["abs_error"].mean(),
            "bias": grouped["error"].mean(),
            "std": grouped["error"].std(ddof=0),
            "mean_age": grouped["age"].mean(),
        }
    )
    result.index.name = by if isinstance(by, str) else "group"
    return result[result["count"] > 0]


def bias_slope(true_ages: ArrayLike, predicted_ages: ArrayLike) -> float:
    """Least-squares slope of the signed error against the true age (per year of age).

    0 for an unbiased model; negative when predictions regress to the mean (the old are
    under-estimated and the young over-estimated).
    """
    true, predicted = _paired(true_ages, predicted_ages)
    if np.ptp(true) == 0:
        return 0.0
    return float(np.polyfit(true, predicted - true, 1)[0])


def dominant_bins(ages: ArrayLike, num_bins: int = age_encoding.NUM_BINS) -> np.ndarray:
    """The bin holding most of an age's two-point mass, int64 `[n]` (a 50/50 tie goes to the lower)."""
    return np.argmax(age_encoding.encode(ages, num_bins=num_bins), axis=1).astype(np.int64)


def bin_confusion(true_ages: ArrayLike, distributions: ArrayLike) -> np.ndarray:
    """Confusion of W1: counts int64 `[num_bins, num_bins]`, rows = true dominant bin, cols = argmax."""
    probabilities = np.asarray(distributions, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"distributions must be [n, num_bins]; got shape {probabilities.shape}.")
    num_bins = probabilities.shape[1]
    true_bins = dominant_bins(true_ages, num_bins)
    if true_bins.size != probabilities.shape[0]:
        raise ValueError(f"{true_bins.size} ages for {probabilities.shape[0]} distributions.")
    matrix = np.zeros((num_bins, num_bins), dtype=np.int64)
    np.add.at(matrix, (true_bins, probabilities.argmax(axis=1)), 1)
    return matrix
