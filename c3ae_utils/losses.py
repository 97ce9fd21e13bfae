"""The losses and metrics of C3AE's cascade loss (`training.compile_model` combines them).

    total = L1(age) + lambda * distribution_loss(distribution),   lambda = 10 by default

The distribution loss compares the softmax output of W1 (float32 `[b, num_bins]`) with the
two-point target (`age_encoding.encode`): `"kl"` (KL(target || prediction), the paper's),
`"ce"` (cross-entropy: the same gradients, since it differs from KL by the target's entropy)
or `"focal"` (`BalancedFocalLoss`, the reference implementation's class-balanced focal loss).
Ages are in years. Everything uses `keras.ops` only, so it runs on the TensorFlow and JAX
backends; every class is registered with Keras (package "c3ae"), so compiled `.keras` files
load wherever this module was imported (`network` imports it).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from c3ae_utils import age_encoding

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1] before taking logarithms
LOSSES = ("focal", "kl", "ce")


def _clipped_probabilities(y_pred):
    """Softmax outputs float32 `[b, num_bins]` clipped to [EPSILON, 1] (so log is finite)."""
    return ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0)


@keras.saving.register_keras_serializable(package="c3ae")
class AgeL1Loss(keras.losses.Loss):
    """L1 loss of the age head: `|age_true - age_pred|` in years, `[b, 1]` -> `[b]`."""

    def __init__(self, name: str = "age_l1", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        difference = ops.cast(y_true, "float32") - ops.cast(y_pred, "float32")
        return ops.mean(ops.abs(difference), axis=-1)


@keras.saving.register_keras_serializable(package="c3ae")
class TwoPointCrossEntropy(keras.losses.Loss):
    """Cross-entropy `-sum_k y_k log p_k` between target `y` and prediction `p`, `[b, 12]` -> `[b]`."""

    def __init__(self, name: str = "two_point_cross_entropy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        target = ops.cast(y_true, "float32")
        return -ops.sum(target * ops.log(_clipped_probabilities(y_pred)), axis=-1)


@keras.saving.register_keras_serializable(package="c3ae")
class TwoPointKLDivergence(keras.losses.Loss):
    """KL divergence `sum_k y_k (log y_k - log p_k)` (0 log 0 = 0), `[b, 12]` -> `[b]` (the paper's loss)."""

    def __init__(self, name: str = "two_point_kl_divergence", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        target = ops.cast(y_true, "float32")
        log_ratio = ops.log(ops.clip(target, EPSILON, 1.0)) - ops.log(_clipped_probabilities(y_pred))
        return ops.sum(target * log_ratio, axis=-1)  # target 0 -> term 0, whatever the clip


@keras.saving.register_keras_serializable(package="c3ae")
class BalancedFocalLoss(keras.losses.Loss):
    """Class-balanced focal loss on the bins plus a small plain cross-entropy term.

    For a target distribution `y` (two-point, `[b, K]`), a prediction `p` (softmax, clipped to
    [1e-7, 1]) and per-bin weights `w` (`bin_weights`, see `balanced_bin_weights`)::

        focal = sum_k  w_k * y_k * (1 - p_k) ** gamma * (-log p_k)
        ce    = sum_k        y_k *                      (-log p_k)
        loss  = (1 - ce_weight) * focal + ce_weight * ce            per sample, `[b]`

    `gamma` (2 by default) down-weights bins that are already predicted well, so training
    concentrates on hard samples; the weights `w` up-weight rare age bins (old people in
    UTKFace and IMDB-WIKI); the cross-entropy term (weight 0.1 by default) keeps a gradient
    on every target bin whatever its weight. With `gamma = 0` and all weights 1 the loss
    equals the cross-entropy exactly.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        bin_weights: list[float] | np.ndarray | None = None,
        ce_weight: float = 0.1,
        num_bins: int = age_encoding.NUM_BINS,
        name: str = "balanced_focal",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0; got {gamma}.")
        if not 0.0 <= ce_weight <= 1.0:
            raise ValueError(f"ce_weight must be in [0, 1]; got {ce_weight}.")
        weights = np.ones(num_bins) if bin_weights is None else np.asarray(bin_weights, float)
        if weights.shape != (num_bins,) or np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise ValueError(
                f"bin_weights must be {num_bins} finite non-negative numbers; got {bin_weights!r}. "
                "Compute them with training.balanced_bin_weights(training_distributions)."
            )
        self.gamma = float(gamma)
        self.ce_weight = float(ce_weight)
        self.num_bins = int(num_bins)
        self.bin_weights = [float(weight) for weight in weights]

    def call(self, y_true, y_pred):
        target = ops.cast(y_true, "float32")
        probabilities = _clipped_probabilities(y_pred)
        negative_log = -ops.log(probabilities)
        weights = ops.convert_to_tensor(np.asarray(self.bin_weights, np.float32))
        modulating = ops.power(1.0 - probabilities, self.gamma)
        focal = ops.sum(weights * target * modulating * negative_log, axis=-1)
        cross_entropy = ops.sum(target * negative_log, axis=-1)
        return (1.0 - self.ce_weight) * focal + self.ce_weight * cross_entropy

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "gamma": self.gamma,
            "bin_weights": self.bin_weights,
            "ce_weight": self.ce_weight,
            "num_bins": self.num_bins,
        }


def balanced_bin_weights(
    distributions: np.ndarray, power: float = 0.5, max_weight: float = 10.0
) -> np.ndarray:
    """Per-bin weights float32 `[K]` from training targets `[n, K]` (two-point distributions).

    The frequency of bin k is `f_k = mean_n y_nk` (soft counts: age 32 adds 0.8 to bin 30
    and 0.2 to bin 40). Weights are `f_k ** -power`, scaled so that `sum_k f_k w_k = 1`
    (the average sample keeps weight 1, so the loss stays on the cross-entropy's scale),
    then capped at `max_weight`; bins never seen in training get `max_weight`.
    `power = 1` is full inverse-frequency balancing, 0 is no balancing (all weights 1).
    """
    targets = np.asarray(distributions, dtype=np.float64)
    if targets.ndim != 2 or len(targets) == 0:
        raise ValueError(f"distributions must be a non-empty [n, num_bins] array; got {targets.shape}.")
    if power < 0 or max_weight <= 0:
        raise ValueError(f"power must be >= 0 and max_weight > 0; got {power} and {max_weight}.")
    frequencies = targets.mean(axis=0)
    seen = frequencies > 0
    weights = np.full(targets.shape[1], float(max_weight))
    weights[seen] = frequencies[seen] ** -power
    weights[seen] /= np.sum(frequencies[seen] * weights[seen])
    return np.minimum(weights, max_weight).astype(np.float32)


def expected_age_absolute_error(y_true, y_pred, bin_width: float = age_encoding.BIN_WIDTH):
    """`|sum_k y_k v_k - sum_k p_k v_k|` in years, `[b, K]` -> `[b]`, with bin values `v_k = k * bin_width`.

    The target's expectation is the (clipped, see `age_encoding`) true age, the prediction's
    is the age read from the distribution head alone (`age_encoding.decode`).
    """
    target = ops.cast(y_true, "float32")
    prediction = ops.cast(y_pred, "float32")
    values = ops.arange(prediction.shape[-1], dtype="float32") * bin_width
    return ops.abs(ops.sum(target * values, axis=-1) - ops.sum(prediction * values, axis=-1))


@keras.saving.register_keras_serializable(package="c3ae")
class ExpectedAgeMAE(keras.metrics.MeanMetricWrapper):
    """Mean absolute error (years) of the age decoded from the distribution head."""

    def __init__(
        self, name: str = "expected_mae", dtype: str | None = None,
        bin_width: float = age_encoding.BIN_WIDTH,
    ) -> None:
        super().__init__(expected_age_absolute_error, name=name, dtype=dtype, bin_width=bin_width)
        self.bin_width = float(bin_width)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "bin_width": self.bin_width}


def distribution_loss(
    loss: str,
    bin_weights: np.ndarray | None = None,
    gamma: float = 2.0,
    ce_weight: float = 0.1,
) -> keras.losses.Loss:
    """The loss of the distribution head: "focal", "kl" or "ce" (see the module docstring)."""
    if loss == "focal":
        return BalancedFocalLoss(gamma=gamma, bin_weights=bin_weights, ce_weight=ce_weight)
    if loss == "kl":
        return TwoPointKLDivergence()
    if loss == "ce":
        return TwoPointCrossEntropy()
    raise ValueError(f"Unknown loss {loss!r}; choose one of {LOSSES}.")
