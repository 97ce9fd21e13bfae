"""Age labels as distributions over age bins: two-point (C3AE), one-hot and Gaussian.

C3AE represents an age `y` by a distribution over `num_bins` bins whose values are
`0, bin_width, 2 * bin_width, ...` (default 12 bins: 0, 10, ..., 110 years). The two-point
representation puts all the mass on the two bins around `y`, in proportion to how close
`y` is to each: age 32 -> 0.8 at bin 30 and 0.2 at bin 40. Decoding is the expectation
over the bin values (`0.8 * 30 + 0.2 * 40 = 32`), so the round trip is exact (up to
float32 rounding) for every age from 0 to the last bin value.

Policy for ages past the last bin value (UTKFace goes up to 116, the last bin is 110):
they are **clipped to the last bin value** (all mass on the last bin, decoded as 110).
`count_clipped(ages)` says how many ages a call to `encode` would clip, so a notebook can
report it. Negative and NaN/infinite ages are errors (`ValueError`).

Everything here is pure NumPy and vectorised; outputs are float32.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike

logger = logging.getLogger(__name__)

NUM_BINS = 12
BIN_WIDTH = 10


def bin_values(num_bins: int = NUM_BINS, bin_width: float = BIN_WIDTH) -> np.ndarray:
    """The age of each bin, float32 `[num_bins]`, in years: `0, bin_width, ...`."""
    if num_bins < 2:
        raise ValueError(f"num_bins must be at least 2 (got {num_bins}).")
    if not bin_width > 0:
        raise ValueError(f"bin_width must be positive (got {bin_width}).")
    return (np.arange(num_bins, dtype=np.float64) * bin_width).astype(np.float32)


def max_age(num_bins: int = NUM_BINS, bin_width: float = BIN_WIDTH) -> float:
    """The last bin value in years (110 for 12 bins of 10): larger ages are clipped to it."""
    return float((num_bins - 1) * bin_width)


LAST_DECADE = 9  # decade index of the oldest group: 90 years and over ("90+")


def decade(ages: ArrayLike, last: int = LAST_DECADE) -> np.ndarray:
    """Age decade of each age, int64 `[n]`: 0 for 0-9 years, 1 for 10-19, ..., `last` for
    `10 * last` years and older (negative ages count as 0). Used to stratify splits, group
    errors and lay out face grids, so every part of the course means the same by "decade"."""
    values = np.asarray(ages, dtype=np.float64).reshape(-1)
    return np.minimum(np.floor(np.maximum(values, 0) / 10), last).astype(np.int64)


def decade_labels(last: int = LAST_DECADE) -> list[str]:
    """Labels of `decade`'s indices: "0-9", "10-19", ..., f"{10 * last}+"."""
    return [f"{10 * k}-{10 * k + 9}" for k in range(last)] + [f"{10 * last}+"]


def _validated_ages(ages: ArrayLike) -> np.ndarray:
    """Ages as float64 `[n]`; raises ValueError for NaN, infinite or negative ages."""
    values = np.asarray(ages, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"Ages must be finite numbers; found {int(np.sum(~np.isfinite(values)))} NaN or "
            "infinite value(s). Drop or fix those rows before encoding."
        )
    if np.any(values < 0):
        raise ValueError(
            f"Ages must be >= 0 years; found {int(np.sum(values < 0))} negative value(s) "
            f"(smallest {values.min()}). Clean the metadata before encoding."
        )
    return values


def count_clipped(ages: ArrayLike, num_bins: int = NUM_BINS, bin_width: float = BIN_WIDTH) -> int:
    """How many `ages` lie above the last bin value and would be clipped to it by `encode`."""
    values = _validated_ages(ages)
    return int(np.sum(values > max_age(num_bins, bin_width)))


def encode(ages: ArrayLike, num_bins: int = NUM_BINS, bin_width: float = BIN_WIDTH) -> np.ndarray:
    """Two-point encoding of ages (years, any shape, flattened) -> float32 `[n, num_bins]`.

    Each row sums to 1 and has at most two non-zero neighbouring entries. Ages above
    `max_age(num_bins, bin_width)` are clipped to it (see the module docstring).
    """
    values = _validated_ages(ages)
    bins = bin_values(num_bins, bin_width)  # validates num_bins and bin_width
    clipped = np.minimum(values, max_age(num_bins, bin_width))
    if clipped.size and np.any(clipped < values):
        logger.info("Clipped %d age(s) above %s years.", int(np.sum(clipped < values)), bins[-1])
    position = clipped / bin_width
    lower = np.minimum(np.floor(position).astype(np.int64), num_bins - 1)
    upper = np.minimum(lower + 1, num_bins - 1)
    upper_weight = position - lower  # 0 when the age sits exactly on a bin (and at the last bin)
    rows = np.arange(values.size)
    distributions = np.zeros((values.size, num_bins), dtype=np.float64)
    distributions[rows, lower] += 1.0 - upper_weight
    distributions[rows, upper] += upper_weight
    return distributions.astype(np.float32)


def decode(
    distributions: ArrayLike, num_bins: int | None = None, bin_width: float = BIN_WIDTH
) -> np.ndarray:
    """Expected age (years), float32 `[n]`, of distributions `[n, num_bins]` over the bins.

    `num_bins` defaults to the width of `distributions`; rows need not be normalised
    exactly (a softmax output is fine), but are not renormalised either.
    """
    array = np.asarray(distributions, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"Expected distributions of shape [n, num_bins]; got {array.shape}.")
    if num_bins is not None and array.shape[1] != num_bins:
        raise ValueError(
            f"Distributions have {array.shape[1]} columns but num_bins={num_bins}; "
            "pass the num_bins used to encode them."
        )
    return (array @ bin_values(array.shape[1], bin_width).astype(np.float64)).astype(np.float32)


def encode_one_hot(
    ages: ArrayLike, num_bins: int = NUM_BINS, bin_width: float = BIN_WIDTH
) -> np.ndarray:
    """One-hot encoding on the nearest bin, float32 `[n, num_bins]` (ties go to the upper bin).

    Decoding it with `decode` loses up to `bin_width / 2` years: the classification view
    that the two-point representation improves on. Ages above the last bin are clipped.
    """
    values = _validated_ages(ages)
    bin_values(num_bins, bin_width)
    clipped = np.minimum(values, max_age(num_bins, bin_width))
    nearest = np.minimum(np.floor(clipped / bin_width + 0.5).astype(np.int64), num_bins - 1)
    distributions = np.zeros((values.size, num_bins), dtype=np.float32)
    distributions[np.arange(values.size), nearest] = 1.0
    return distributions


def encode_gaussian(
    ages: ArrayLike,
    sigma: float = BIN_WIDTH,
    num_bins: int = NUM_BINS,
    bin_width: float = BIN_WIDTH,
) -> np.ndarray:
    """Gaussian label distribution (DLDL-style), float32 `[n, num_bins]`, rows summing to 1.

    Bin k gets weight `exp(-(bin_k - age)^2 / (2 sigma^2))` (sigma in years), normalised.
    Its expectation is biased towards the middle near the first and last bins, so
    `decode(encode_gaussian(a))` is only approximately `a`. Ages above the last bin are clipped.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive (got {sigma}).")
    values = _validated_ages(ages)
    bins = bin_values(num_bins, bin_width).astype(np.float64)
    clipped = np.minimum(values, max_age(num_bins, bin_width))
    weights = np.exp(-((bins[None, :] - clipped[:, None]) ** 2) / (2.0 * sigma**2))
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
