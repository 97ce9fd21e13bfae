"""`train(config) -> Run`: one training run from its face cache to a finished run folder.

It reads the run's train and val splits, takes the folder's lock, starts or resumes the folder
(`training.runs`: resume checks the cache's fingerprint), fits a new model with TensorFlow
(tf.data input, optional mixed precision, all GPUs) from the epoch after the saved one, and
measures `best.keras` on the validation split (`predictions.parquet`, `metrics.json`); a run
that diverged ends in `RunFailed` instead. The input pipeline's random numbers depend only on
the seed and the batch number, so a resumed run fast-forwards it with `skip` and ends with
the same weights and metrics as an uninterrupted one.

TensorFlow (and the tf.data `pipeline`, built on it) is imported inside the functions that
train, so importing `c3ae_utils.training` also works on Keras' JAX backend.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from c3ae_utils import age_encoding, network, paths, runtime
from c3ae_utils.faces import cache as face_cache
from c3ae_utils.losses import balanced_bin_weights
from c3ae_utils.training.callbacks import make_callbacks
from c3ae_utils.training.compilation import compile_model, learning_rate_schedule
from c3ae_utils.training.config import TrainConfig
from c3ae_utils.training.runs import (
    Run,
    cache_fingerprint,
    check_not_failed,
    check_same_cache,
    holds_run,
    load_run,
    lock_run,
    run_dir,
    saved_state,
    start_folder,
)

logger = logging.getLogger(__name__)

# Crops uint8 [m, 3, 64, 64, 3], ages float32 [m] and the table rows of one split.
Split = tuple[np.ndarray, np.ndarray, pd.DataFrame]


def train(config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = ()) -> Run:
    """Train C3AE as `config` says; write and return the run (see `c3ae_utils.training`).

    With `resume=True`, an unfinished run of the same name continues from its last epoch (a
    run that never finished one starts again; a finished one is returned as it is) after its
    files are checked: ValueError naming a damaged one, or a face cache other than the one it
    started on. One process at a time trains a run folder (`paths.Locked` for a second one,
    naming the first one's PID). A run whose loss becomes NaN or infinite, or whose validation
    MAE leaves the age range (`callbacks.divergence`), is recorded as failed and ends in
    `RunFailed`. `callbacks` are extra Keras callbacks; they run after the run folder has
    recorded each epoch.
    """
    from c3ae_utils import pipeline  # tf.data: needs TensorFlow (see the module docstring)

    config = config.resolved()
    folder = run_dir(config.run_name)
    # Before the folder (and its lock file) exists: a missing or unusable cache leaves no run behind.
    splits = None if holds_run(folder) else _load_splits(config)
    with lock_run(folder):
        state = saved_state(folder, config)
        if state is not None and state.get("completed") and (folder / "metrics.json").exists():
            logger.info("Run %s is already finished; loading it.", folder)
            return load_run(folder)
        splits = splits or _load_splits(config)
        fingerprint = cache_fingerprint(splits["train"][2], splits["val"][2])
        if state is None:
            state = start_folder(folder, config, fingerprint)
        else:
            check_same_cache(folder, config, fingerprint)
        steps = pipeline.steps_per_epoch(len(splits["train"][0]), config.batch_size)
        if state["epoch"] < config.epochs and not state.get("stopped"):
            _fit(config, folder, state, splits, steps, callbacks)
        check_not_failed(folder)
        _finish_run(folder, state, *splits["val"], config.batch_size, steps, config.train_on_val)
    return load_run(folder)


def _cache_command(config: TrainConfig) -> str:
    """The `c3ae cache` command that builds the face cache `config` trains on."""
    words = ["c3ae", "cache", "build-cache", "--dataset", config.dataset]
    if config.max_images is not None:
        words += ["--max-images", str(config.max_images)]
    if config.cache_name != face_cache.cache_name(config.dataset, config.max_images):
        words += ["--name", str(config.cache_name)]
    return shlex.join(words)


def _load_splits(config: TrainConfig) -> dict[str, Split]:
    """The train and val splits of the run's face cache ("train" holds the val rows too with
    `train_on_val`). FileNotFoundError saying how to build a missing cache; ValueError for a
    cache without both splits."""
    folder = face_cache.cache_path(config.cache_name)
    if not face_cache.is_finished(folder):
        built = ", ".join(face_cache.finished_caches()) or "none"
        raise FileNotFoundError(
            f"No face cache {config.cache_name!r} at {folder}: build it with `{_cache_command(config)}`, "
            f"or pass the --max-images or --cache-name of a built one (built: {built})."
        )
    cache = face_cache.load_cache(folder)
    splits = {}
    for split in ("train", "val"):
        try:
            selected = cache.select(split)
        except ValueError as error:
            raise ValueError(
                f"The face cache {folder} cannot train a run: {error} Training needs 'train' and 'val' "
                "rows; FG-NET (all 'train') is fine-tuned with training.leave_one_subject_out instead."
            ) from None
        splits[split] = (selected.crops, selected.table["age"].to_numpy(np.float32), selected.table)
    if config.train_on_val:
        (train_crops, train_ages, train_table), (val_crops, val_ages, val_table) = splits["train"], splits["val"]
        splits["train"] = (np.concatenate([train_crops, val_crops]), np.concatenate([train_ages, val_ages]),
                           pd.concat([train_table, val_table]))
    return splits


def _distribution_strategy():
    """MirroredStrategy over all GPUs when there are several, else the default strategy."""
    import tensorflow as tf  # see the module docstring: training imports without TensorFlow

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _build_model(config: TrainConfig, train_ages: np.ndarray, steps: int) -> keras.Model:
    """A new C3AE model compiled for `config` (focal weights from the training ages)."""
    model = network.build_c3ae(
        use_se=config.use_se, white_norm=config.white_norm,
        learn_w2=config.learn_w2, w2_init=config.w2_init,
    )
    weights = None
    if config.loss == "focal":
        weights = balanced_bin_weights(age_encoding.encode(train_ages), config.balance_power)
        logger.info("Focal bin weights: %s", [round(float(w), 2) for w in weights])
    return compile_model(
        model, config.loss, learning_rate_schedule(config, steps), config.loss_weight,
        weights, config.focal_gamma, config.focal_ce_weight, config.jit_compile,
    )


def _load_last(model: keras.Model, folder: Path, epoch: int) -> None:
    """Give `model` the weights and optimizer state (moments, step count, loss scale) of
    last.keras; the model itself is rebuilt so it gets this session's precision policy."""
    logger.info("Resuming %s after epoch %d.", folder.name, epoch)
    last = folder / "last.keras"  # the optimizer's variables exist already (compile_model built them)
    try:
        model.load_weights(last)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{last} cannot be loaded ({error}); pass overwrite=True (`--overwrite`) to start the run again."
        ) from None


def _verbosity(verbose: int | str) -> int:
    """Keras fit verbosity: "auto" is 1 (a progress bar) in a terminal, 2 (a line per epoch) otherwise."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _set_up_tensorflow(config: TrainConfig) -> bool:
    """Report the device, set op determinism as `config` says and seed everything; return
    whether a GPU is present."""
    import tensorflow as tf  # see the module docstring: training imports without TensorFlow

    logger.info("%s", runtime.report_device(verbose=False))
    gpus = bool(tf.config.list_physical_devices("GPU"))
    deterministic = (not gpus) if config.deterministic is None else config.deterministic
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        if config.jit_compile:
            logger.warning("Keras turns XLA off while op determinism is on; pass deterministic=False "
                           "to train with jit_compile.")
    runtime.set_seed(config.seed)
    return gpus


def _fit(
    config: TrainConfig, folder: Path, state: dict[str, Any], splits: dict[str, Split], steps: int,
    callbacks: Sequence[keras.callbacks.Callback],
) -> None:
    """Train from the epoch after `state["epoch"]` to `config.epochs`, recording each epoch."""
    from c3ae_utils import pipeline  # tf.data: needs TensorFlow (see the module docstring)

    gpus = _set_up_tensorflow(config)
    (train_crops, train_ages, _), (val_crops, val_ages, _) = splits["train"], splits["val"]
    train_data = pipeline.make_dataset(
        train_crops, train_ages, training=True, batch_size=config.batch_size,
        seed=config.seed, augment=config.augment, repeat=True,
    ).skip(state["epoch"] * steps)  # exact fast-forward: batches depend on (seed, batch number)
    val_data = pipeline.make_dataset(val_crops, val_ages, training=False, batch_size=config.batch_size)
    previous_policy = keras.mixed_precision.global_policy().name
    mixed = gpus if config.mixed_precision is None else config.mixed_precision
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    started = time.perf_counter()
    try:
        with _distribution_strategy().scope():
            model = _build_model(config, train_ages, steps)
            if state["epoch"]:
                _load_last(model, folder, state["epoch"])
        model.fit(
            train_data, epochs=config.epochs, initial_epoch=state["epoch"], steps_per_epoch=steps,
            validation_data=val_data, callbacks=[*make_callbacks(config, folder, state), *callbacks],
            verbose=_verbosity(config.verbose), shuffle=False,  # the pipeline shuffles
        )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    logger.info("Training took %.1f s.", time.perf_counter() - started)


def _finish_run(
    folder: Path, state: dict[str, Any], val_crops: np.ndarray, val_ages: np.ndarray,
    val_table: pd.DataFrame, batch_size: int, steps: int, val_trained_on: bool = False,
) -> None:
    """Evaluate best.keras on the validation split; write predictions.parquet and metrics.json."""
    history = pd.read_csv(folder / "history.csv").head(state["epoch"])  # the recorded epochs
    best_path = folder / ("best.keras" if (folder / "best.keras").exists() else "last.keras")
    outputs = network.predict_ages(network.load_model(best_path), val_crops, max(batch_size, 256))
    distributions = outputs["distribution"]
    predicted = outputs["age"]
    expected = age_encoding.decode(distributions)
    predictions = pd.DataFrame({
        "path": val_table["path"].astype(str) if "path" in val_table else pd.Series(dtype=str),
        "age": val_ages,
        "predicted_age": predicted,
        "expected_age": expected,
    })
    for k in range(distributions.shape[1]):
        predictions[f"p{k:02d}"] = distributions[:, k]
    predictions.to_parquet(folder / "predictions.parquet", index=False)
    train_seconds = float(history["seconds"].sum())
    later = history["seconds"].iloc[1:]  # the first epoch also traces and compiles the model
    metrics = {
        "val_mae": float(np.mean(np.abs(predicted - val_ages))),
        "val_expected_mae": float(np.mean(np.abs(expected - val_ages))),
        "best_epoch": state.get("best_epoch"),
        "epochs": state["epoch"],
        "seconds": train_seconds,
        "samples_per_second": len(history) * steps * batch_size / train_seconds if train_seconds else None,
        "steady_samples_per_second": (
            len(later) * steps * batch_size / float(later.sum()) if len(later) else None
        ),
        "val_samples": len(val_ages),
        "model": best_path.name,
        "val_trained_on": val_trained_on,  # True: the validation rows were training rows (not held out)
    }
    paths.write_json(folder / "metrics.json", metrics, allow_nan=False)
    state["completed"] = True
    paths.write_json(folder / "resume.json", state, allow_nan=False)
    logger.info("Run %s: val MAE %.2f (expected %.2f) after %d epochs%s.", folder.name,
                metrics["val_mae"], metrics["val_expected_mae"], metrics["epochs"],
                " (in-sample: the val rows were trained on)" if val_trained_on else "")
