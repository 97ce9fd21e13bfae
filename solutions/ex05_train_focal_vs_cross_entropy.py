"""Worked solutions to the exercises of notebook 05 (train C3AE: focal loss vs cross-entropy).

    python -m solutions.ex05_train_focal_vs_cross_entropy [numbers] [--full]

Every run here is the course's run of notebook 05 (`course.train_config`) with one setting
changed, compared with notebook 05's own runs (`course.trained_run`) of the same length. Run
names are keyed by their settings, so nothing collides with notebook 05's runs, and a second
call reuses the runs the first one trained.
"""

from __future__ import annotations

import sys
from typing import Any

import keras
import numpy as np
import pandas as pd

import solutions
from c3ae_utils import age_encoding, course, training


def _train(small_run: bool, loss: str = "focal", **settings: Any) -> training.Run:
    """The course's run for `loss` with `settings` changed (trained, finished, or reused)."""
    return training.train(course.train_config(loss, small_run, verbose=0, **settings))


def _maes(run: training.Run) -> dict[str, float]:
    """Validation MAE (years) of the age head and of the distribution's expected age."""
    return {"age head": run.metrics["val_mae"], "expected age": run.metrics["val_expected_mae"]}


def exercise_1(small_run: bool = True) -> dict[str, Any]:
    """LOSS_WEIGHT = 0 and 100: the expected-age MAE of the distribution head, and the age head."""
    runs = {0.0: _train(small_run, loss_weight=0.0), 10.0: course.trained_run("focal", small_run),
            100.0: _train(small_run, loss_weight=100.0)}
    maes = {f"lambda {weight:g}": _maes(run) for weight, run in runs.items()}
    # With lambda = 0 only the L1 loss trains W1, through W2: the distribution learns less.
    assert maes["lambda 0"]["expected age"] > maes["lambda 10"]["expected age"]
    zero, ten = maes["lambda 0"], maes["lambda 10"]
    return {"mae": maes,
            "answer": f"With lambda 0 W1 is trained only through W2 by the L1 loss: both readings are worse "
                      f"({zero['age head']:.1f} and {zero['expected age']:.1f} years against {ten['age head']:.1f} "
                      f"and {ten['expected age']:.1f} with lambda 10). They stay close to each other because W2 "
                      "starts at the bin values; a large lambda mostly trains the distribution."}


def exercise_2(small_run: bool = True) -> dict[str, Any]:
    """FOCAL_GAMMA = 0 next to the cross-entropy run: what differences remain, and why."""
    no_focus = _train(small_run, "focal", focal_gamma=0.0)
    cross_entropy = course.trained_run("ce", small_run)
    train_ages = course.face_cache("utkface", small_run).table.query("split == 'train'")["age"].to_numpy()
    weights = training.balanced_bin_weights(age_encoding.encode(train_ages), power=0.5)
    assert weights.max() > 1 > weights.min()  # the bin weights are what is left: rare bins count more
    return {"mae": {"focal, gamma 0": _maes(no_focus), "cross-entropy": _maes(cross_entropy)},
            "bin_weights": np.round(weights, 2).tolist(),
            "answer": "With gamma 0 the focal loss is a weighted cross-entropy (plus a 10% plain share): the "
                      "remaining difference comes from the class-balanced bin weights, which up-weight rare bins."}


def exercise_3(small_run: bool = True) -> dict[str, Any]:
    """balance_power = 1.0 (full inverse frequency): MAE of the oldest bins, and of the others."""
    runs = {0.5: course.trained_run("focal", small_run), 1.0: _train(small_run, balance_power=1.0)}
    by_group = {}
    for power, run in runs.items():
        table = run.predictions()
        error = (table["predicted_age"] - table["age"]).abs()
        old = table["age"] >= 60
        by_group[str(power)] = {"60 and over": float(error[old].mean()), "under 60": float(error[~old].mean()),
                                "faces 60 and over": int(old.sum())}
    assert by_group["1.0"]["faces 60 and over"] == by_group["0.5"]["faces 60 and over"] > 0
    half, full = by_group["0.5"], by_group["1.0"]
    return {"mae_by_group": by_group,
            "answer": f"Full inverse frequency pushes the rare old bins harder: faces 60 and over "
                      f"{half['60 and over']:.1f} -> {full['60 and over']:.1f} years, faces under 60 "
                      f"{half['under 60']:.1f} -> {full['under 60']:.1f} (only {half['faces 60 and over']} "
                      "validation faces are 60 or over, so the first number is noisy)."}


class _InterruptAfter(keras.callbacks.Callback):
    """Raises KeyboardInterrupt (what Kernel > Interrupt raises) at the end of epoch `epoch` (0-based)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def exercise_4(small_run: bool = True) -> dict[str, Any]:
    """Interrupt a run, run it again: no epoch lost or repeated in history.csv."""
    def config(**changes: Any) -> training.TrainConfig:
        # seed 1 and 3 epochs: a short run of its own, which really starts, stops and resumes here
        return course.train_config("focal", small_run, epochs=3, seed=1, verbose=0, **changes)

    folder = training.run_dir(config().run_name)
    try:  # overwrite: start from scratch even when an earlier call finished this run
        training.train(config(resume=False, overwrite=True), callbacks=[_InterruptAfter(0)])
    except KeyboardInterrupt:
        pass
    kept = pd.read_csv(folder / "history.csv")["epoch"].tolist()
    run = training.train(config())  # the same cell again: resumes after the kept epoch
    epochs = run.history["epoch"].tolist()
    assert kept == [1] and epochs == [1, 2, 3]
    return {"epochs_kept_at_the_interrupt": kept, "epochs_in_history": epochs,
            "answer": "The interrupted run kept its finished epoch; running it again continued from there, "
                      "so history.csv has every epoch exactly once."}


def exercise_5(small_run: bool = True) -> dict[str, Any]:
    """w2_init="random" (the reference) against W2 starting at the bin values: the first epochs."""
    runs = {"bins": course.trained_run("focal", small_run), "random": _train(small_run, w2_init="random")}
    curves = {init: run.history["val_age_mae"].round(2).tolist() for init, run in runs.items()}
    assert curves["random"][0] > curves["bins"][0]
    return {"val_age_mae_per_epoch": curves,
            "answer": "A random W2 starts far from the bin values, so the age head is wrong by tens of years "
                      "at first and climbs slowly; starting at the bin values, the age head is right as soon "
                      "as W1 is."}


if __name__ == "__main__":
    sys.exit(solutions.main(sys.modules[__name__]))
