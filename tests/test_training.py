"""training: the cascade losses on hand-computed cases, and real runs on a small real face cache.

The run tests build one real UTKFace cache of 80 images (MTCNN, alignment, crops) and train
the real network on it for a few epochs: a run folder, an interrupted run that resumes to
the same weights, the CLI in a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from c3ae_utils import age_encoding, cli, course, faces, training
from c3ae_utils.training import fit, runs

REPO = Path(__file__).resolve().parents[1]
NUM_IMAGES = course.SMALL.max_images  # the shared cache (conftest)
EPOCHS = 3
BASE = {"dataset": "utkface", "max_images": NUM_IMAGES, "epochs": EPOCHS, "batch_size": 16,
        "patience": 2, "verbose": 0}


def _loss(loss: keras.losses.Loss, y_true, y_pred) -> np.ndarray:
    """Per-sample losses `[b]` as float64 NumPy."""
    return np.asarray(loss.call(np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)), float)


# ----------------------------------------------------------------------------- losses


def test_age_l1_is_the_mean_absolute_difference_in_years():
    loss = training.AgeL1Loss()
    assert _loss(loss, [[30.0], [50.0]], [[32.0], [45.0]]) == pytest.approx([2.0, 5.0])
    assert float(loss(np.array([[30.0], [50.0]]), np.array([[32.0], [45.0]]))) == pytest.approx(3.5)


# Age 32 -> 0.8 on bin 30 (index 3) and 0.2 on bin 40 (index 4).
TARGET = age_encoding.encode([32.0])
PREDICTION = np.full((1, 12), 0.025, np.float32)
PREDICTION[0, 3], PREDICTION[0, 4] = 0.5, 0.25  # 10 bins x 0.025 + 0.5 + 0.25 = 1


def test_cross_entropy_and_kl_on_a_hand_computed_case():
    cross_entropy = -(0.8 * math.log(0.5) + 0.2 * math.log(0.25))
    target_entropy = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert _loss(training.TwoPointCrossEntropy(), TARGET, PREDICTION)[0] == pytest.approx(cross_entropy, rel=1e-5)
    assert _loss(training.TwoPointKLDivergence(), TARGET, PREDICTION)[0] == pytest.approx(
        cross_entropy - target_entropy, rel=1e-5
    )
    assert _loss(training.TwoPointKLDivergence(), TARGET, TARGET)[0] == pytest.approx(0.0, abs=1e-5)


def test_focal_loss_on_a_hand_computed_case():
    weights = np.linspace(0.5, 2.0, 12)
    loss = training.BalancedFocalLoss(gamma=2.0, bin_weights=weights, ce_weight=0.1)
    focal = (weights[3] * 0.8 * 0.5**2 * -math.log(0.5)) + (weights[4] * 0.2 * 0.75**2 * -math.log(0.25))
    cross_entropy = -(0.8 * math.log(0.5) + 0.2 * math.log(0.25))
    assert _loss(loss, TARGET, PREDICTION)[0] == pytest.approx(0.9 * focal + 0.1 * cross_entropy, rel=1e-5)


def test_focal_with_gamma_0_and_uniform_weights_is_the_cross_entropy():
    rng = np.random.default_rng(0)
    targets = age_encoding.encode(rng.uniform(0, 110, 64))
    logits = rng.normal(size=(64, 12))
    predictions = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = _loss(training.TwoPointCrossEntropy(), targets, predictions)
    for ce_weight in (0.0, 0.1, 1.0):
        focal = training.BalancedFocalLoss(gamma=0.0, bin_weights=np.ones(12), ce_weight=ce_weight)
        np.testing.assert_allclose(_loss(focal, targets, predictions), expected, rtol=1e-5)
    # With gamma 2, confident correct predictions cost less than under cross-entropy.
    focal = training.BalancedFocalLoss(gamma=2.0, ce_weight=0.0)
    assert np.all(_loss(focal, targets, predictions) < expected)


def test_balanced_bin_weights_follow_inverse_frequency():
    targets = np.array([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]])  # f = 0.75, 0.25, 0
    full = training.balanced_bin_weights(targets, power=1.0, max_weight=10.0)
    np.testing.assert_allclose(full, [2 / 3, 2.0, 10.0], rtol=1e-6)  # sum_k f_k w_k = 1
    none = training.balanced_bin_weights(targets, power=0.0, max_weight=10.0)
    np.testing.assert_allclose(none, [1.0, 1.0, 10.0])
    capped = training.balanced_bin_weights(targets, power=1.0, max_weight=1.5)
    np.testing.assert_allclose(capped, [2 / 3, 1.5, 1.5], rtol=1e-6)
    with pytest.raises(ValueError, match="non-empty"):
        training.balanced_bin_weights(np.zeros((0, 12)))


def test_losses_and_metric_serialize_and_reject_bad_settings():
    loss = training.BalancedFocalLoss(gamma=1.5, bin_weights=np.arange(1, 13), ce_weight=0.2)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, training.BalancedFocalLoss)
    assert restored.get_config() == loss.get_config()
    assert _loss(restored, TARGET, PREDICTION) == pytest.approx(_loss(loss, TARGET, PREDICTION))
    metric = training.ExpectedAgeMAE()
    metric.update_state(TARGET, PREDICTION)
    expectation = 0.5 * 30 + 0.25 * 40 + 0.025 * (sum(range(0, 120, 10)) - 30 - 40)  # 39.75 years
    assert float(metric.result()) == pytest.approx(abs(32.0 - expectation), rel=1e-5)
    with pytest.raises(ValueError, match="bin_weights"):
        training.BalancedFocalLoss(bin_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="loss must be one of"):
        training.TrainConfig(loss="mse")


def test_the_jax_benchmark_trains_without_tensorflow():
    """`bench/bench_train.py --backend jax` (the GPU benchmark) on CPU: network, compile_model and the
    focal loss train without TensorFlow (the script fails if `tensorflow` was imported)."""
    command = [sys.executable, "bench/bench_train.py", "--backend", "jax", "--batch-size", "16",
               "--samples", "64", "--epochs", "2"]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "KERAS_BACKEND": "jax"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    batch, steps, _rest = result.stdout.strip().splitlines()[-1].split(maxsplit=2)
    assert (int(batch), int(steps)) == (16, 4)  # the table row of the one batch size asked for


# ----------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def uninterrupted(workspace) -> training.Run:
    return training.train(training.TrainConfig(run_name="whole", **BASE))


def test_a_run_writes_its_folder(uninterrupted):
    run = uninterrupted
    for name in ("config.json", "history.csv", "best.keras", "last.keras", "metrics.json",
                 "predictions.parquet", "resume.json"):
        assert (run.path / name).is_file(), name
    assert any((run.path / "tensorboard").rglob("*tfevents*"))
    assert run.config.cache_name == faces.cache_name("utkface", NUM_IMAGES) and run.config.loss == "focal"
    assert list(run.history["epoch"]) == list(range(1, EPOCHS + 1))
    for column in ("loss", "val_loss", "age_mae", "val_age_mae", "distribution_expected_mae",
                   "learning_rate", "seconds"):
        assert np.isfinite(run.history[column]).all(), column
    assert run.history["learning_rate"].is_monotonic_decreasing  # cosine schedule
    assert run.history["loss"].iloc[-1] < run.history["loss"].iloc[0]
    predictions = run.predictions()
    assert {"path", "age", "predicted_age", "expected_age"} <= set(predictions.columns)
    probabilities = predictions[[f"p{k:02d}" for k in range(12)]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(predictions["expected_age"], age_encoding.decode(probabilities), atol=1e-3)
    metrics = run.metrics
    assert metrics["val_samples"] == len(predictions) > 0 and metrics["epochs"] == EPOCHS
    assert metrics["val_mae"] == pytest.approx(
        np.mean(np.abs(predictions["predicted_age"] - predictions["age"])), rel=1e-5)
    best_row = run.history.loc[run.history["val_age_mae"].idxmin()]
    assert metrics["best_epoch"] == best_row["epoch"]
    assert all(math.isfinite(metrics[key]) for key in ("val_mae", "val_expected_mae", "seconds"))
    # best.keras reloads without custom_objects and reproduces the saved predictions.
    model = training.load_run(run.name).load_model("best")
    cache = faces.load_cache(run.config.cache_name)
    val = (cache.table["split"] == "val").to_numpy()
    ages = model.predict(cache.crops[val], verbose=0)["age"][:, 0]
    np.testing.assert_allclose(ages, predictions["predicted_age"], atol=1e-3)


class CrashAfterEpoch(keras.callbacks.Callback):
    """Stops training like a crash at the end of epoch `epoch` (1-based), after the run saved it."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.epoch:
            raise SimulatedCrash(f"simulated crash after epoch {self.epoch}")


class SimulatedCrash(RuntimeError):
    """What `CrashAfterEpoch` raises."""


def test_an_interrupted_run_resumes_to_the_same_result(uninterrupted):
    settings = {**BASE, "run_name": "interrupted"}
    with pytest.raises(SimulatedCrash):
        training.train(training.TrainConfig(**settings), callbacks=[CrashAfterEpoch(2)])
    folder = training.run_dir("interrupted")
    assert json.loads((folder / "resume.json").read_text())["epoch"] == 2
    assert not (folder / "metrics.json").exists()
    with pytest.raises(ValueError, match="resume=True"):
        training.train(training.TrainConfig(**settings))
    with pytest.raises(ValueError, match="settings differ"):
        training.train(training.TrainConfig(resume=True, **{**settings, "learning_rate": 0.001}))
    resumed = training.train(training.TrainConfig(resume=True, **settings))
    # Same seed, same history (the first two epochs were trained fresh: seeded runs repeat),
    # and after resuming the same third epoch, weights and metrics.
    columns = [c for c in uninterrupted.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[columns], uninterrupted.history[columns])
    for ours, theirs in zip(resumed.load_model("last").get_weights(),
                            uninterrupted.load_model("last").get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for key in ("val_mae", "val_expected_mae", "best_epoch", "epochs"):
        assert resumed.metrics[key] == uninterrupted.metrics[key], key
    # A finished run asked to resume is returned as it is.
    assert training.train(training.TrainConfig(resume=True, **settings)).metrics == resumed.metrics


def test_train_on_val_trains_on_both_splits_and_keeps_the_last_epoch(workspace, tmp_path):
    for wrong in ({"patience": 2}, {"patience": 0, "schedule": "plateau"}):
        with pytest.raises(ValueError, match="train_on_val needs patience=0"):
            training.TrainConfig(train_on_val=True, **{**BASE, **wrong})
    config = training.TrainConfig(train_on_val=True, **{**BASE, "patience": 0}).resolved()
    assert training.default_run_name(config).startswith(f"utkface-focal-{NUM_IMAGES}-")  # its own folder
    held_out = fit._load_splits(dataclasses.replace(config, train_on_val=False))
    together = fit._load_splits(config)
    np.testing.assert_array_equal(together["train"][0], np.concatenate([held_out["train"][0], held_out["val"][0]]))
    np.testing.assert_array_equal(together["train"][1], np.concatenate([held_out["train"][1], held_out["val"][1]]))
    np.testing.assert_array_equal(together["val"][0], held_out["val"][0])
    # The recorder keeps the last epoch even when the (now in-sample) validation MAE rose.
    state = runs.start_folder(tmp_path / "run", config)
    recorder = training.RunRecorder(tmp_path / "run", state, {}, keep_last=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False  # fit sets it; the recorder reads it
    recorder.set_model(model)
    for epoch, mae in enumerate((5.0, 6.0)):
        recorder.on_epoch_end(epoch, {training.MONITOR: mae})
        assert state["best_epoch"] == epoch + 1 and (tmp_path / "run" / "best.keras").is_file()
    assert state["best"] == 6.0


def test_the_command_line_sets_every_option():
    # `c3ae train ...` training to the end is test_training_errors' resume of a SIGINTed run.
    arguments = ["--dataset", "utkface", "--max-images", "7", "--loss", "kl", "--epochs", "1",
                 "--batch-size", "32", "--run-name", "from-cli", "--no-se", "--fixed-w2", "--verbose", "0"]
    values = vars(training.build_parser().parse_args(arguments))
    assert (values["loss"], values["epochs"], values["batch_size"], values["max_images"]) == ("kl", 1, 32, 7)
    assert values["use_se"] is False and values["learn_w2"] is False and values["run_name"] == "from-cli"
    assert set(values) <= {field.name for field in dataclasses.fields(training.TrainConfig)}
    with pytest.raises(SystemExit) as exit_info:  # `c3ae train --help` reaches training.main
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
