"""Evaluating a model, run or weights file on a face cache: the per-face prediction table,
its summary metrics, and the learned W2 next to the bin values (`w2_comparison`)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from c3ae_utils import age_encoding, datasets, faces, network, paths
from c3ae_utils.evaluation.metrics import (
    THETAS,
    age_groups,
    bias_slope,
    bin_confusion,
    cumulative_score,
    dominant_bins,
    grouped_errors,
    mean_absolute_error,
    pose_groups,
)

logger = logging.getLogger(__name__)


def w2_comparison(model: Any) -> pd.DataFrame | None:
    """The learned W2 (kernel of the Dense layer named `age`) next to the bin values.

    Returns a table with one row per bin: `bin_value` (years), `learned` (the kernel, years
    per unit of probability), `difference` (learned - bin value), and the layer's bias in
    `table.attrs["bias"]`; None when the model has no Dense `age` layer with a [12, 1] kernel.
    """
    try:
        layer = network.core_network(model).get_layer("age")
    except ValueError:
        return None
    weights = layer.get_weights()
    if not weights or np.ndim(weights[0]) != 2 or np.shape(weights[0])[1] != 1:
        return None
    kernel = np.asarray(weights[0], dtype=np.float64)[:, 0]
    bins = age_encoding.bin_values(kernel.size).astype(np.float64)
    table = pd.DataFrame({"bin_value": bins, "learned": kernel, "difference": kernel - bins})
    table.index.name = "bin"
    table.attrs["bias"] = float(np.asarray(weights[1]).reshape(-1)[0]) if len(weights) > 1 else 0.0
    return table


@dataclass
class Evaluation:
    """One model on one selection of a cache.

    `table`: one row per face with `cache_index` (row in the cache), `path`, `dataset`,
    `split`, `age` (true, years), `predicted_age` (the `age` head), `expected_age` (the
    distribution's expectation over the bin values), `error` (predicted - true),
    `abs_error`, `true_bin`, `predicted_bin`, `p00`..`p11`, and `gender`, `race`,
    `subject`, `yaw`, `pitch`, `roll` where the cache has them.
    `metrics`: the JSON-ready summary (see `summarize`). `w2`: see `w2_comparison`.
    """

    name: str
    split: str
    table: pd.DataFrame
    metrics: dict[str, Any]
    w2: pd.DataFrame | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def mae(self) -> float:
        """MAE of the `age` head, years."""
        return float(self.metrics["mae"])

    def cs_curve(self, column: str = "predicted_age") -> pd.Series:
        """CS(theta) for theta = 0..10 years, indexed by theta."""
        values = cumulative_score(self.table["age"], self.table[column], THETAS)
        return pd.Series(values, index=pd.Index(THETAS, name="theta"), name=self.name)

    def worst(self, count: int = 12, column: str = "predicted_age") -> pd.DataFrame:
        """The `count` rows with the largest absolute error of `column`."""
        errors = (self.table[column] - self.table["age"]).abs()
        return self.table.loc[errors.sort_values(ascending=False).index[:count]]


def distribution_columns(num_bins: int = age_encoding.NUM_BINS) -> list[str]:
    """Names of the per-bin probability columns: p00, p01, ..., p11."""
    return [f"p{k:02d}" for k in range(num_bins)]


def prediction_table(
    table: pd.DataFrame, positions: np.ndarray, ages: np.ndarray, distributions: np.ndarray
) -> pd.DataFrame:
    """The per-face table of an evaluation (columns listed in `Evaluation`): rows `positions`
    (int `[n]`) of the cache's `table`, predicted `ages` `[n]` (years), `distributions` `[n, 12]`."""
    rows = table.iloc[positions].reset_index(drop=True)
    true = rows["age"].to_numpy(dtype=np.float64)
    result = pd.DataFrame({"cache_index": positions.astype(np.int64)})
    for column in ("path", "dataset", "split"):
        if column in rows:
            result[column] = rows[column].to_numpy()
    result["age"] = true
    result["predicted_age"] = ages.astype(np.float64)
    result["expected_age"] = age_encoding.decode(distributions).astype(np.float64)
    result["error"] = result["predicted_age"] - true
    result["abs_error"] = result["error"].abs()
    result["true_bin"] = dominant_bins(true, distributions.shape[1])
    result["predicted_bin"] = distributions.argmax(axis=1).astype(np.int64)
    for k, column in enumerate(distribution_columns(distributions.shape[1])):
        result[column] = distributions[:, k]
    for column in ("gender", "race", "subject", "yaw", "pitch", "roll"):
        if column in rows:
            result[column] = rows[column].to_numpy()
    return result


def _grouped_dict(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """`grouped_errors` output as {group: {count, mae, bias, std, mean_age}} (JSON-ready)."""
    return {
        str(key): {k: int(v) if k == "count" else float(v) for k, v in row.items()}
        for key, row in frame.iterrows()
    }


def summarize(table: pd.DataFrame, w2: pd.DataFrame | None = None) -> dict[str, Any]:
    """Summary metrics of a prediction table (JSON-ready; all errors in years).

    Keys: `count`, `mae`, `mae_expected`, `rmse`, `cs` and `cs_expected` ({theta: CS}),
    `by_decade`, `by_gender`, `by_race`, `by_pose` ({group: {count, mae, bias, std,
    mean_age}}, the last three only where the columns exist), `bias_slope` (and
    `bias_slope_expected`), `bin_accuracy`, `bin_within_one`, `bin_confusion` (list of
    lists), and `w2` (learned kernel, bin values, bias, mean/max |difference|) when known.
    """
    true = table["age"].to_numpy(dtype=np.float64)
    predicted = table["predicted_age"].to_numpy(dtype=np.float64)
    expected = table["expected_age"].to_numpy(dtype=np.float64)
    probabilities = table[[c for c in table.columns if re.fullmatch(r"p\d\d", c)]].to_numpy()
    confusion = bin_confusion(true, probabilities)
    metrics: dict[str, Any] = {
        "count": int(len(table)),
        "mae": mean_absolute_error(true, predicted),
        "mae_expected": mean_absolute_error(true, expected),
        "rmse": float(np.sqrt(np.mean((predicted - true) ** 2))),
        "cs": dict(zip(map(str, THETAS), cumulative_score(true, predicted).tolist(), strict=True)),
        "cs_expected": dict(zip(map(str, THETAS), cumulative_score(true, expected).tolist(), strict=True)),
        "bias_slope": bias_slope(true, predicted),
        "bias_slope_expected": bias_slope(true, expected),
        "by_decade": _grouped_dict(grouped_errors(table, age_groups(true))),
        "bin_accuracy": float(np.trace(confusion) / confusion.sum()),
        "bin_within_one": float(
            np.mean(np.abs(table["true_bin"] - table["predicted_bin"]) <= 1)
        ),
        "bin_confusion": confusion.tolist(),
    }
    for column in ("gender", "race"):
        if column in table and table[column].notna().any():
            metrics[f"by_{column}"] = _grouped_dict(grouped_errors(table, column))
    if "yaw" in table and np.isfinite(table["yaw"].to_numpy(dtype=np.float64)).any():
        metrics["by_pose"] = _grouped_dict(grouped_errors(table, pose_groups(table["yaw"])))
    if w2 is not None:
        metrics["w2"] = {
            "learned": w2["learned"].tolist(),
            "bin_values": w2["bin_value"].tolist(),
            "bias": float(w2.attrs.get("bias", 0.0)),
            "mean_abs_difference": float(w2["difference"].abs().mean()),
            "max_abs_difference": float(w2["difference"].abs().max()),
        }
    return metrics


def _model_and_config(spec: Any) -> tuple[Any, str, dict[str, Any]]:
    """(Keras model, display name, its run's config.json or {}) for anything
    `network.load_model` accepts."""
    if isinstance(spec, keras.Model):
        return spec, network.model_label(spec), {}
    path = network.resolve_weights(spec)
    config = paths.read_json(path.parent / "config.json", missing_ok=True) if path.suffix == ".keras" else {}
    return network.load_model(path), network.model_label(path), config


def evaluate(
    run_or_model: Any,
    cache: faces.FaceCache | str | Path,
    split: str = "val",
    batch_size: int = 256,
    name: str | None = None,
    flip: bool = False,
) -> Evaluation:
    """Evaluate a model, run or weights file (anything `network.load_model` accepts) on the
    `split` rows of a face cache.

    `cache` is a `faces.FaceCache` or a cache name; `split` is "train", "val", "test" or
    "all" (cross-dataset evaluation uses "all"); `flip`: average with the mirrored crops
    (`network.predict_ages`).
    """
    model, model_name, config = _model_and_config(run_or_model)
    faces_cache = faces.load_cache(cache)
    positions = datasets.select_split(faces_cache.table, split)
    started = time.perf_counter()
    outputs = network.predict_ages(model, faces_cache.crops[positions], batch_size, progress=True, flip=flip)
    logger.info("%s: %d faces predicted in %.1f s", model_name, positions.size, time.perf_counter() - started)
    table = prediction_table(faces_cache.table, positions, outputs["age"], outputs["distribution"])
    w2 = w2_comparison(model)
    metrics = summarize(table, w2)
    metrics.update({"name": name or model_name, "split": split})
    return Evaluation(name=name or model_name, split=split, table=table, metrics=metrics, w2=w2, config=config)
