"""Error analysis: predictions, MAE, cumulative score, grouped errors, FG-NET, the results table.

    python -m c3ae_utils.evaluation results   # `make results`: artifacts/results.{md,csv} + README

Vocabulary:

- MAE (mean absolute error): mean of |predicted age - true age|, in years.
- CS(theta) (cumulative score): the fraction of faces whose absolute error is at most
  `theta` years, for theta = 0, 1, ..., 10. It rises with theta and ends at most at 1.
- Bias: the mean *signed* error (predicted - true). A model that regresses to the mean
  has positive bias for the young and negative bias for the old.
- W1 / W2: C3AE's two heads. W1 = Dense(12, softmax) gives the distribution over the bins
  0, 10, ..., 110; W2 = Dense(1) maps that distribution to the age. The paper's reasoning
  says W2 should equal the bin values; the reference learns it. `w2_comparison` reads it.

Every model is read through its two outputs: `age` (the W2 head, "predicted age") and
`distribution`, whose expectation over the bin values is the "expected age".
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from c3ae_utils import age_encoding, cli, datasets, network, paths, training
from c3ae_utils.faces import cache as face_cache

logger = logging.getLogger(__name__)

THETAS: tuple[int, ...] = tuple(range(11))  # CS(theta) for theta = 0..10 years
POSE_EDGES: tuple[float, ...] = (0.0, 10.0, 20.0, 30.0, 45.0)  # |angle| groups, degrees
SETTING_KEYS = ("dataset", "max_images", "loss", "epochs", "use_se")  # what a setting is; never the seed
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
# Published numbers (MAE in years), each with its source and protocol. Never measured here.
PUBLISHED: tuple[dict[str, Any], ...] = (
    {"model": "C3AE paper", "dataset": "IMDB", "mae": 6.57,
     "protocol": "IMDB-WIKI train/test split (paper, Zhang et al. CVPR 2019)"},
    {"model": "C3AE paper", "dataset": "WIKI", "mae": 6.44,
     "protocol": "IMDB-WIKI train/test split (paper, Zhang et al. CVPR 2019)"},
    {"model": "C3AE paper", "dataset": "MORPH II", "mae": 2.75,
     "protocol": "MORPH II, pre-trained on IMDB-WIKI (paper)"},
    {"model": "C3AE paper", "dataset": "FG-NET", "mae": 2.95,
     "protocol": "FG-NET leave-one-subject-out, pre-trained on IMDB-WIKI (paper)"},
    {"model": "reference v84 (focal)", "dataset": "IMDB", "mae": 6.77,
     "protocol": "random 70/30 split of IMDB (StevenBanama/C3AE README)"},
    {"model": "reference v84 (focal)", "dataset": "WIKI", "mae": 6.74,
     "protocol": "random 70/30 split of WIKI (StevenBanama/C3AE README)"},
    {"model": "reference v89 (focal + SE)", "dataset": "IMDB", "mae": 6.58,
     "protocol": "random 70/30 split of IMDB (StevenBanama/C3AE README)"},
    {"model": "reference v90 (focal + SE + white norm)", "dataset": "IMDB", "mae": 6.53,
     "protocol": "random 70/30 split of IMDB (StevenBanama/C3AE README; weights not published)"},
    {"model": "SSR-Net (0.32 MB)", "dataset": "IMDB", "mae": 6.96,
     "protocol": "IMDB-WIKI split (as cited by the C3AE paper)"},
    {"model": "SSR-Net (0.32 MB)", "dataset": "WIKI", "mae": 6.77,
     "protocol": "IMDB-WIKI split (as cited by the C3AE paper)"},
    {"model": "SSR-Net (0.32 MB)", "dataset": "MORPH II", "mae": 3.16,
     "protocol": "MORPH II (as cited by the C3AE paper)"},
)


# --------------------------------------------------------------------------- pure metrics


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


# --------------------------------------------------------------------------- models and runs


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when the file does not exist."""
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


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


# --------------------------------------------------------------------------- evaluation


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
    """The per-face table of an evaluation (columns listed in `Evaluation`)."""
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
    config = read_json(path.parent / "config.json") if path.suffix == ".keras" else {}
    return network.load_model(path), network.model_label(path), config


def evaluate(
    run_or_model: Any,
    cache: face_cache.FaceCache | str | Path,
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
    faces_cache = face_cache.load_cache(cache)
    positions = datasets.select_split(faces_cache.table, split)
    started = time.perf_counter()
    outputs = network.predict_ages(model, faces_cache.crops[positions], batch_size, progress=True, flip=flip)
    logger.info("%s: %d faces predicted in %.1f s", model_name, positions.size, time.perf_counter() - started)
    table = prediction_table(faces_cache.table, positions, outputs["age"], outputs["distribution"])
    w2 = w2_comparison(model)
    metrics = summarize(table, w2)
    metrics.update({"name": name or model_name, "split": split})
    return Evaluation(name=name or model_name, split=split, table=table, metrics=metrics, w2=w2, config=config)


# --------------------------------------------------------------------------- FG-NET protocol


@dataclass
class LosoResult:
    """Leave-one-subject-out on FG-NET: one row per fold in `folds` (subject, counts, MAE
    before and after fine-tuning, years) and every test face in `predictions`."""

    folds: pd.DataFrame
    predictions: pd.DataFrame
    settings: dict[str, Any]

    @property
    def mean_mae(self) -> float:
        """Mean over folds of the per-fold MAE after fine-tuning (the paper's FG-NET number)."""
        return float(self.folds["mae"].mean())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            **self.settings,
            "num_folds": int(len(self.folds)),
            "mean_mae": self.mean_mae,
            "mean_mae_before": float(self.folds["mae_before"].mean()),
            "face_mae": mean_absolute_error(self.predictions["age"], self.predictions["predicted_age"]),
            "folds": self.folds.to_dict(orient="records"),
        }


def loso_result(fine_tuned: training.LosoRun, cache: face_cache.FaceCache | str | Path) -> LosoResult:
    """Measure a leave-one-subject-out run (`training.leave_one_subject_out`) on the faces of
    `cache` it was fine-tuned on: per-fold MAE before and after fine-tuning, and the
    prediction table of every held-out face (with a `fold` column)."""
    table = face_cache.load_cache(cache).table
    rows, predictions = [], []
    for number, fold in enumerate(fine_tuned.folds):
        true = table["age"].to_numpy(dtype=np.float64)[fold.test]
        fold_table = prediction_table(table, fold.test, fold.ages, fold.distributions)
        fold_table["fold"] = number
        predictions.append(fold_table)
        rows.append({
            "fold": number, "subject": fold.subject, "n_test": int(fold.test.size), "n_train": fold.n_train,
            "mae_before": mean_absolute_error(true, fold.ages_before),
            "mae": mean_absolute_error(true, fold.ages),
            "mae_expected": mean_absolute_error(true, fold_table["expected_age"]),
        })
    return LosoResult(pd.DataFrame(rows), pd.concat(predictions, ignore_index=True), dict(fine_tuned.settings))


# --------------------------------------------------------------------------- results table


def find_runs(runs_dir: Path | None = None) -> list[Path]:
    """Run folders holding a trained model (`best.keras`), sorted by name."""
    folder = runs_dir or paths.runs_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / "best.keras").exists())


def _describe_run(config: dict[str, Any]) -> dict[str, Any]:
    """Setting, loss, SE, data size, epochs, seed and the training command of a run, read
    from its own `config.json` (never from its name)."""
    settings = {key: config[key] for key in SETTING_KEYS if key in config}
    train_on_val = bool(config.get("train_on_val"))
    if train_on_val:  # named only when on: runs from before the setting existed group as before
        settings["train_on_val"] = True
    arguments = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    return {
        "setting": "-".join(str(value) for key, value in settings.items() if key in ("dataset", "loss"))
        + ("" if config.get("use_se", True) else "-no-se") + ("-trainval" if train_on_val else ""),
        "loss": config.get("loss", "?"), "se": config.get("use_se"),
        "epochs": config.get("epochs"),
        "seed": config.get("seed"),
        "command": f"`training.train(TrainConfig({arguments}))`" if arguments else "?",
        "dataset": config.get("dataset", "?"), "cache": config.get("cache_name"),
        "key": arguments,
    }


def results_rows(split: str = "test", batch_size: int = 256, reference: bool = True) -> pd.DataFrame:
    """Evaluate every run in `paths.runs_dir()` (and the reference weights) on its cache's
    `split` (falling back to "val" when the cache has no test rows); one row per run."""
    rows: list[dict[str, Any]] = []
    caches: dict[str, Any] = {}
    for folder in tqdm(find_runs(), desc="runs", unit="run"):
        config = read_json(folder / "config.json")
        info = _describe_run(config)
        if not info["cache"]:
            logger.warning("Run %s names no cache in config.json; skipped.", folder.name)
            continue
        cache = caches.setdefault(info["cache"], face_cache.load_cache(info["cache"]))
        used = _available_split(cache.table, split)
        evaluation = evaluate(folder, cache, used, batch_size)
        rows.append(_result_row(folder.name, info, evaluation, used, cache))
    if caches:
        rows.extend(_shipped_rows(caches, split, batch_size))
    if reference and caches:
        rows.extend(_reference_rows(caches, split, batch_size))
    return pd.DataFrame(rows)


def _available_split(table: pd.DataFrame, split: str) -> str:
    """`split` when the table has rows in it, else "val" (caches split without a test part)."""
    return split if "split" in table and (table["split"] == split).any() else "val"


def _result_row(name: str, info: dict[str, Any], evaluation: Evaluation, split: str, cache: Any) -> dict[str, Any]:
    dataset = str(cache.table["dataset"].iloc[0]) if "dataset" in cache.table else info["dataset"]
    return {
        "run": name, **info,
        "test_data": f"{dataset} {split} split", "n": evaluation.metrics["count"],
        "mae": evaluation.metrics["mae"], "mae_expected": evaluation.metrics["mae_expected"],
        "cs5": evaluation.metrics["cs"]["5"],
    }


def _shipped_rows(caches: dict[str, Any], split: str, batch_size: int) -> list[dict[str, Any]]:
    """The course's shipped models (`models/`), on the first run's cache, with the training
    command their model card records."""
    cache = next(iter(caches.values()))
    used = _available_split(cache.table, split)
    rows = []
    for label in network.SHIPPED_WEIGHTS:
        try:
            weights = network.shipped_weights_path(label)
        except FileNotFoundError as error:
            logger.warning("%s; its row is skipped.", error)
            continue
        card = read_json(weights.with_suffix(".json"))
        training = card.get("training", {})
        info = {**_describe_run(training), "setting": f"{label} (shipped, models/)", "key": label,
                "command": f"`{card.get('training_command', '?')}`, then `make release`"
                + (" (flip averaging inside)" if card.get("flip_averaging") else "")}
        rows.append(_result_row(label, info, evaluate(weights, cache, used, batch_size, name=label), used, cache))
    return rows


def _reference_rows(caches: dict[str, Any], split: str, batch_size: int) -> list[dict[str, Any]]:
    """The reference weights, evaluated through our pipeline on the first run's cache."""
    cache = next(iter(caches.values()))
    used = _available_split(cache.table, split)
    rows = []
    for label in network.REFERENCE_WEIGHTS:
        try:
            weights = network.reference_weights_path(label)
        except (OSError, ValueError) as error:  # the table is still useful without them
            logger.warning("Reference weights unavailable (%s); rows skipped.", error)
            return rows
        evaluation = evaluate(weights, cache, used, batch_size, name=label)
        info = {"setting": label, "loss": "focal", "se": label == "reference-v89",
                "epochs": None, "seed": None, "key": label,
                "command": "network.load_reference_h5 (trained on IMDB-WIKI by the reference)",
                "dataset": "imdb-wiki", "cache": "IMDB-WIKI (the reference's own training)"}
        rows.append(_result_row(label, info, evaluation, used, cache))
    return rows


def aggregate_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (runs whose configs agree on `SETTING_KEYS`, whatever their seed
    or name): the mean and std over its runs of `mae`, `mae_expected`, `cs5`, and the seeds."""
    if rows.empty:
        return rows
    keys = ["key", "setting", "loss", "se", "cache", "test_data", "command"]
    frame = rows.assign(se=rows["se"].astype(str))
    grouped = frame.groupby(keys, sort=False, dropna=False)
    result = grouped.agg(
        runs=("run", "size"), n=("n", "first"), epochs=("epochs", "first"),
        seeds=("seed", lambda seeds: ", ".join(str(int(s)) for s in seeds if pd.notna(s)) or "-"),
        mae_mean=("mae", "mean"), mae_std=("mae", "std"),
        mae_expected_mean=("mae_expected", "mean"), mae_expected_std=("mae_expected", "std"),
        cs5_mean=("cs5", "mean"),
    ).reset_index()
    return result


def _format_mae(mean: float, std: float, runs: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if runs > 1 and math.isfinite(std) else f"{mean:.2f}"


def results_markdown(aggregated: pd.DataFrame, extra: dict[str, Any] | None = None) -> str:
    """The Markdown results table: our settings (mean ± std over seeds), the FG-NET results
    of notebook 06 when present, then the published numbers with their protocols."""
    lines = [
        "| model | loss | SE | tested on | MAE (age head) | MAE (expected age) | CS(5) | runs (seeds) | trained on (cache) | produced by |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for row in aggregated.itertuples(index=False):
        lines.append(
            f"| {row.setting} | {row.loss} | {row.se} | {row.test_data} (n={row.n}) | "
            f"{_format_mae(row.mae_mean, row.mae_std, row.runs)} | "
            f"{_format_mae(row.mae_expected_mean, row.mae_expected_std, row.runs)} | "
            f"{row.cs5_mean:.3f} | {row.runs} ({row.seeds}) | {row.cache} | {row.command} |"
        )
    for item in (extra or {}).get("fgnet", []):
        expected = item.get("mae_expected")
        lines.append(
            f"| {item['model']} | - | - | {item['protocol']} (n={item['n']}) | {item['mae']:.2f} | "
            f"{'-' if expected is None else f'{expected:.2f}'} | - | 1 | {item['cache']} | {item['command']} |"
        )
    lines += ["", "Published numbers (not measured here):", "",
              "| model | dataset | MAE | protocol |", "| --- | --- | ---: | --- |"]
    lines += [f"| {p['model']} | {p['dataset']} | {p['mae']:.2f} | {p['protocol']} |" for p in PUBLISHED]
    return "\n".join(lines) + "\n"


def fgnet_rows_from_notebook(metrics_path: Path | None = None) -> list[dict[str, Any]]:
    """FG-NET cross-dataset and leave-one-subject-out rows from notebook 06's metrics file."""
    path = metrics_path or paths.metrics_path("error_analysis")
    data = read_json(path)
    if not data:
        return []
    parameters = data.get("parameters", {})
    trained_on = face_cache.cache_name(parameters.get("DATASET", "utkface"), parameters.get("MAX_IMAGES"))
    shown = ", ".join(f"{key}={value!r}" for key, value in parameters.items() if key in ("MAX_IMAGES", "NUM_FOLDS", "FINE_TUNE_EPOCHS"))
    command = f"notebooks/06_error_analysis.ipynb ({shown})"
    rows = []
    for name, metrics in data.get("cross_dataset", {}).items():
        rows.append({"model": name, "protocol": "FG-NET, all faces, no fine-tuning (cross-dataset)",
                     "n": metrics["count"], "mae": metrics["mae"], "mae_expected": metrics["mae_expected"],
                     "cache": trained_on, "command": command})
    loso = data.get("loso")
    if loso:
        # The paper's number is the mean over folds; the MAE over all test faces and the
        # folds' mean before fine-tuning are given beside it.
        rows.append({"model": loso["model"],
                     "protocol": f"FG-NET leave-one-subject-out, {loso['num_folds']} folds, "
                                 f"{loso['epochs']} fine-tuning epochs; mean over folds (over faces: "
                                 f"{loso['face_mae']:.2f}; before fine-tuning: {loso['mean_mae_before']:.2f})",
                     "n": sum(f["n_test"] for f in loso["folds"]), "mae": loso["mean_mae"],
                     "cache": trained_on, "command": command})
    return rows


def refresh_readme(markdown: str, readme: Path | None = None) -> bool:
    """Replace the text between the results markers of README.md; True if it was refreshed.

    Nothing else in the README is touched; without both markers nothing is written.
    """
    path = readme or paths.repo_root() / "README.md"
    if not path.exists():
        return False
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    updated = text[: start + len(README_START)] + "\n" + markdown + text[end:]
    if updated != text:
        path.write_text(updated)
    return True


def write_results(split: str = "test", batch_size: int = 256, reference: bool = True,
                  readme: Path | None = None, refresh: bool = True) -> dict[str, Path]:
    """Evaluate the runs, write `artifacts/results.md` and `artifacts/results.csv`, and (with
    `refresh`) the README section between the results markers; return the paths written."""
    rows = results_rows(split, batch_size, reference)
    if rows.empty:
        raise FileNotFoundError(
            f"No trained runs in {paths.runs_dir()}: run notebook 05 or `c3ae train` first."
        )
    aggregated = aggregate_seeds(rows)
    stamp = time.strftime("%Y-%m-%d")
    markdown = (
        f"Generated by `make results` (`python -m c3ae_utils.evaluation results --split {split}`) "
        f"on {stamp} from the runs in `artifacts/runs/`; MAE in years, mean ± std over seeds "
        "where a setting has several runs.\n\n"
        + results_markdown(aggregated, {"fgnet": fgnet_rows_from_notebook()})
    )
    target = paths.ensure_dir(paths.artifacts_dir())
    written = {"markdown": target / "results.md", "csv": target / "results.csv"}
    written["markdown"].write_text(markdown)
    rows.to_csv(written["csv"], index=False)
    if refresh and refresh_readme(markdown, readme):
        written["readme"] = readme or paths.repo_root() / "README.md"
    return written


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = cli.ArgumentParser(prog="python -m c3ae_utils.evaluation", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    results = commands.add_parser("results", help="write artifacts/results.{md,csv} and refresh the README")
    results.add_argument("--split", default="test", choices=["val", "test"])
    results.add_argument("--batch-size", type=int, default=256)
    results.add_argument("--no-reference", action="store_true", help="skip the reference weights")
    results.add_argument("--readme", type=Path, default=None, help="README to refresh (default: the repo's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m c3ae_utils.evaluation results [--split test] [--no-reference]`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = write_results(args.split, args.batch_size, not args.no_reference, args.readme)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, prog="python -m c3ae_utils.evaluation"))
