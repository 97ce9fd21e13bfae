"""The Keras callbacks of a training run (`make_callbacks`): the epoch clock, the NaN guard,
early stopping and the plateau schedule on `MONITOR`, TensorBoard, and `RunRecorder`, which
saves every epoch into the run folder by the resume protocol of `training.runs`, or records
the run as failed at the first epoch that diverged (`divergence`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops

from c3ae_utils import age_encoding, datasets, paths
from c3ae_utils.training.config import TrainConfig
from c3ae_utils.training.runs import PENDING_MODEL, promote_pending

MONITOR = "val_age_mae"  # the quantity that picks best.keras, early stopping and the plateau schedule
# A validation age MAE above the whole age range of the bins (0-110 years) means divergence:
# an age inside that range (what an untrained C3AE outputs: the expectation over the bins) is
# off by at most 110 years for any age the bins cover, so only ages far outside it get there.
DIVERGED_MAE = age_encoding.max_age()


def divergence(row: dict[str, float]) -> str | None:
    """Why the epoch whose logs are `row` diverged (a value that is NaN or infinite, or a
    validation age MAE above `DIVERGED_MAE` years), or None for a healthy epoch."""
    rate = f" at learning rate {row['learning_rate']:g}" if "learning_rate" in row else ""
    broken = sorted((name for name, value in row.items() if not math.isfinite(value)),
                    key=lambda name: name != "loss")  # the total loss first: the one a reader knows
    if broken:
        return f"{broken[0]} became {row[broken[0]]}{rate}"
    if row.get(MONITOR, 0.0) > DIVERGED_MAE:
        return (f"{MONITOR} reached {row[MONITOR]:.6g} years{rate}, above {DIVERGED_MAE:g}, "
                "the whole age range of the bins")
    return None


class EpochClock(keras.callbacks.Callback):
    """Adds `seconds` (wall time of the epoch, validation included) and `learning_rate` to the logs."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()
        self._learning_rate = float(ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = self._learning_rate
            logs["seconds"] = time.perf_counter() - self._started


class RunRecorder(keras.callbacks.Callback):
    """Writes the run folder after every epoch: history.csv, best.keras, last.keras, resume.json.

    An epoch that diverged (`divergence`) stops training instead: its history row is kept, its
    model is not, and resume.json records `"failed": {"epoch", "reason"}`. Also restores, at
    the start of a resumed run, the state of the early-stopping and plateau callbacks saved
    in resume.json.
    """

    def __init__(self, folder: Path, state: dict[str, Any], stateful: dict[str, keras.callbacks.Callback],
                 keep_last: bool = False):
        super().__init__()
        self.folder = folder
        self.keep_last = keep_last
        self.state = state
        self.stateful = stateful
        history_path = folder / "history.csv"
        self.rows = (
            pd.read_csv(history_path).head(state["epoch"]).to_dict("records")
            if history_path.exists() else []
        )

    def on_train_begin(self, logs: dict | None = None) -> None:
        for name, callback in self.stateful.items():
            for attribute, value in self.state.get("callbacks", {}).get(name, {}).items():
                if value is not None:  # null: no value yet (the callback starts with its own)
                    setattr(callback, attribute, value)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {key: float(value) for key, value in (logs or {}).items()}
        self.rows.append({"epoch": epoch + 1, **logs})
        history = pd.DataFrame(self.rows)
        paths.atomic_write(self.folder / "history.csv", lambda temporary: history.to_csv(temporary, index=False))
        reason = divergence(logs)
        if reason is not None:
            self._fail(epoch + 1, reason)
            return
        pending = self.folder / PENDING_MODEL
        paths.atomic_write(pending, self.model.save)
        current = logs.get(MONITOR)
        best = self.state.get("best")
        # With train_on_val the validation MAE is not held out: the last epoch is the one kept.
        if current is not None and math.isfinite(current) and (best is None or current < best or self.keep_last):
            self.state.update(best=float(current), best_epoch=epoch + 1)
        self.state.update(
            epoch=epoch + 1,
            callbacks={name: _callback_state(callback) for name, callback in self.stateful.items()},
            last_sha256=datasets.file_digest(pending),
            stopped=bool(self.model.stop_training),  # early stopping ended the run here
        )
        paths.write_json(self.folder / "resume.json", self.state, allow_nan=False)  # the commit: the epoch is saved
        promote_pending(self.folder, self.state)

    def _fail(self, epoch: int, reason: str) -> None:
        """Record the run as failed in `epoch` (1-based) for `reason`, and stop training; the
        diverged model is not saved (last.keras stays the epoch before)."""
        self.state.update(failed={"epoch": epoch, "reason": reason}, stopped=True, completed=False)
        paths.write_json(self.folder / "resume.json", self.state, allow_nan=False)
        self.model.stop_training = True


def _callback_state(callback: keras.callbacks.Callback) -> dict[str, Any]:
    """The attributes of EarlyStopping / ReduceLROnPlateau that change from epoch to epoch
    (a non-finite number, such as the infinite "best" of no epoch yet, as None: strict JSON)."""
    names = ("wait", "best", "best_epoch", "cooldown_counter")
    state = {}
    for name in names:
        if hasattr(callback, name):
            value = getattr(callback, name)
            if isinstance(value, float | np.floating):
                value = float(value) if math.isfinite(value) else None
            state[name] = value
    return state


def make_callbacks(
    config: TrainConfig, folder: Path, state: dict[str, Any]
) -> list[keras.callbacks.Callback]:
    """Clock, NaN guard, early stopping, plateau schedule, TensorBoard, the run recorder
    (which saves the epoch; callbacks passed to `train` run after it)."""
    stateful: dict[str, keras.callbacks.Callback] = {}
    callbacks: list[keras.callbacks.Callback] = [EpochClock(), keras.callbacks.TerminateOnNaN()]
    if config.patience:
        stateful["early_stopping"] = keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="min", patience=config.patience
        )
    if config.schedule == "plateau":
        stateful["reduce_lr"] = keras.callbacks.ReduceLROnPlateau(
            monitor=MONITOR, mode="min", factor=0.5, patience=max(1, config.patience // 2),
            min_lr=config.learning_rate / 100,
        )
    callbacks += list(stateful.values())
    callbacks.append(
        keras.callbacks.TensorBoard(log_dir=str(folder / "tensorboard"), write_graph=False)
    )
    callbacks.append(RunRecorder(folder, state, stateful, keep_last=config.train_on_val))
    return callbacks
