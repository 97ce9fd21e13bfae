"""Training C3AE: the cascade loss, compile, callbacks, `model.fit`, and run folders that resume.

The cascade loss of C3AE (Zhang et al. 2019) trains both heads at once::

    total = L1(age) + lambda * distribution_loss(distribution),   lambda = 10 by default

where the distribution loss compares the softmax output of W1 with the two-point target
(`age_encoding.encode`) and is either

- `"kl"`: the Kullback-Leibler divergence KL(target || prediction), as in the paper;
- `"ce"`: the cross-entropy, which differs from KL only by the target's entropy (a constant
  per sample, so the gradients are identical);
- `"focal"`: the class-balanced focal loss of the reference implementation (`BalancedFocalLoss`).

The losses and metrics themselves live in `c3ae_utils.losses` (re-exported here).

`train(TrainConfig(...))` writes everything a run produces into `paths.runs_dir()/<run_name>/`:

| file | content |
| --- | --- |
| `config.json` | every setting of `TrainConfig`, with the cache and run names resolved |
| `history.csv` | one row per epoch: losses, `age_mae`, `val_age_mae`, ..., `learning_rate`, `seconds` |
| `best.keras` | the model of the epoch with the lowest validation age MAE (the last epoch with `train_on_val`) |
| `last.keras` | the model and its optimizer state after the last finished epoch |
| `resume.json` | the epoch reached, the state of the callbacks and the SHA-256 of its `last.keras`, for `resume=True` |
| `metrics.json` | validation MAE of `best.keras` (`val_mae`: age head; `val_expected_mae`: expectation over the bins), `best_epoch`, `epochs`, `seconds`, training samples/s (overall and after epoch 1), `val_trained_on` |
| `predictions.parquet` | validation rows: `path`, `age`, `predicted_age`, `expected_age`, `p00`..`p11` |
| `tensorboard/` | TensorBoard logs (`tensorboard --logdir <run>/tensorboard`) |

An interrupted run continues from `last.keras` at the next epoch with `resume=True`, and ends
with the same weights and metrics as an uninterrupted one: the model is rebuilt and gets the
weights and optimizer state of `last.keras`, the callbacks' state in `resume.json`, and the input pipeline (whose
random numbers depend only on the seed and the batch number) is fast-forwarded with `skip`.
Writing `resume.json` is what makes an epoch saved: the epoch's model goes to `next.keras`
first and becomes `last.keras` (and `best.keras`) only after, so a stop at any moment leaves
a consistent folder (a resume finishes or drops a half-done save). Resuming checks the saved
files (ValueError naming a damaged one); a run that never finished an epoch starts again.

FG-NET's leave-one-subject-out protocol (`leave_one_subject_out`) fine-tunes a trained model
once per held-out subject and returns the predictions; `evaluation.loso_result` measures them.

TensorFlow (and the tf.data `pipeline`) is imported only inside `train` and
`leave_one_subject_out`, so the losses, metrics and `compile_model` also work on Keras' JAX
backend (used by `bench/bench_train.py` on GPU machines without TensorFlow).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from keras import ops
from tqdm.auto import tqdm

from c3ae_utils import age_encoding, cli, datasets, network, paths, runtime, shapes
from c3ae_utils.faces import cache as face_cache
from c3ae_utils.losses import (  # noqa: F401  (re-exported: training.AgeL1Loss etc. as before)
    EPSILON,
    LOSSES,
    AgeL1Loss,
    BalancedFocalLoss,
    ExpectedAgeMAE,
    TwoPointCrossEntropy,
    TwoPointKLDivergence,
    balanced_bin_weights,
    distribution_loss,
    expected_age_absolute_error,
)

logger = logging.getLogger(__name__)

SCHEDULES = ("cosine", "plateau", "constant")
MONITOR = "val_age_mae"  # the quantity that picks best.keras, early stopping and the plateau schedule
PENDING_MODEL = "next.keras"  # an epoch's model until resume.json records that epoch


# --------------------------------------------------------------------------------------
# Configuration and runs
# --------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Every setting of one training run (saved as `config.json`)."""

    dataset: str = "utkface"  # dataset of the face cache
    max_images: int | None = None  # the cache of that many images (faces.cache_name); None: all
    cache_name: str | None = None  # explicit cache name (overrides dataset/max_images)
    run_name: str | None = None  # folder under paths.runs_dir(); default f"{dataset}-{loss}[-{max_images}]"
    loss: str = "focal"  # distribution loss: "focal", "kl" or "ce"
    loss_weight: float = 10.0  # lambda: weight of the distribution loss next to L1(age)
    focal_gamma: float = 2.0
    focal_ce_weight: float = 0.1  # weight of the plain cross-entropy inside the focal loss
    balance_power: float = 0.5  # focal bin weights ~ frequency ** -power (balanced_bin_weights)
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 0.002  # Adam, as in the reference
    schedule: str = "cosine"  # "cosine" (to 1% of lr), "plateau" (x0.5 after patience/2 flat epochs), "constant"
    patience: int = 10  # early stopping on val_age_mae; 0 switches it off
    seed: int = 0  # weights, shuffling and augmentation
    train_on_val: bool = False  # also train on the val split (a final model; needs patience 0, no plateau)
    augment: bool = True
    use_se: bool = True  # squeeze-and-excitation blocks
    white_norm: bool = True  # (x - 127.5) / 128 inside the model
    learn_w2: bool = True  # train the age head W2 (False: fixed to the bin values)
    w2_init: str = "bins"  # "bins" (the bin values) or "random" (the reference)
    mixed_precision: bool | None = None  # None: on when a GPU is present
    jit_compile: bool = False  # XLA (slower on CPU)
    deterministic: bool | None = None  # op determinism; None: on CPU only
    resume: bool = False  # continue an interrupted run of the same name
    overwrite: bool = False  # delete an earlier run of the same name first
    verbose: int | str = "auto"  # Keras fit verbosity; "auto": 1 in a terminal, 2 otherwise

    # Settings that may change between an interrupted run and its resumption.
    RESUMABLE_CHANGES = ("resume", "overwrite", "verbose")

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {self.loss!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}.")
        if self.w2_init not in ("bins", "random"):
            raise ValueError(f"w2_init must be 'bins' or 'random'; got {self.w2_init!r}.")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)!r}.")
        if self.learning_rate <= 0 or self.loss_weight < 0 or self.patience < 0:
            raise ValueError("learning_rate must be > 0, loss_weight and patience >= 0.")
        if self.max_images is not None and int(self.max_images) <= 0:
            raise ValueError(f"max_images must be a positive integer or None; got {self.max_images!r}.")
        if self.verbose not in (0, 1, 2, "auto"):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; got {self.verbose!r}.")
        if self.run_name is not None:
            check_run_name(self.run_name)
        if self.train_on_val and (self.patience or self.schedule == "plateau"):
            raise ValueError(
                "train_on_val needs patience=0 and a schedule other than 'plateau': both watch the "
                "validation MAE, which is no longer held out. Choose the epoch count on a run without it."
            )

    def resolved(self) -> TrainConfig:
        """A copy with `cache_name` and `run_name` filled in."""
        cache_name = self.cache_name
        if cache_name is None:
            cache_name = face_cache.cache_name(self.dataset, self.max_images)
        run_name = self.run_name or default_run_name(self)
        return dataclasses.replace(self, cache_name=cache_name, run_name=run_name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


# Settings that name a run's folder themselves, or do not change what a run computes.
_UNNAMED_SETTINGS = ("dataset", "loss", "max_images", "run_name", *TrainConfig.RESUMABLE_CHANGES)


def default_run_name(config: TrainConfig) -> str:
    """The run folder name of a config without an explicit `run_name`.

    `"<dataset>-<loss>"`, plus `"-<max_images>"` for a limited cache, plus a tag of every other
    setting that differs from `TrainConfig()` (e.g. `utkface-focal-400-3fa9c1`), so that
    runs with different settings never share (or collide in) one folder.
    """
    name = f"{config.dataset}-{config.loss}" + (f"-{config.max_images}" if config.max_images else "")
    tag = paths.settings_tag(config, ignore=_UNNAMED_SETTINGS)
    return f"{name}-{tag}" if tag else name


@dataclass
class Run:
    """A run folder read back: its config, history and metrics, and loaders for its models."""

    path: Path
    config: TrainConfig
    history: pd.DataFrame
    metrics: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    def load_model(self, which: str = "best", compile: bool = True) -> keras.Model:
        """`best.keras` (lowest validation age MAE) or `last.keras`; compiled as trained unless
        `compile=False` (enough for predictions, and quiet about a mixed-precision optimizer)."""
        if which not in ("best", "last"):
            raise ValueError(f"which must be 'best' or 'last'; got {which!r}.")
        return network.load_model(self.path / f"{which}.keras", compile=compile)

    def predictions(self) -> pd.DataFrame:
        """Validation predictions: path, age, predicted_age, expected_age, p00..p11."""
        return pd.read_parquet(self.path / "predictions.parquet")


def check_run_name(name: str) -> str:
    """`name` if it is a plain folder name (no "/", "\\", NUL, not starting with "."); else ValueError."""
    if not name or any(character in name for character in "/\\\0") or name.startswith("."):
        raise ValueError(
            f"run names are plain folder names (no '/' or '\\', not '.', '..' or starting with '.'); "
            f"got {name!r}."
        )
    return name


def run_dir(name: str) -> Path:
    """The folder of run `name` under `paths.runs_dir()`."""
    return paths.runs_dir() / check_run_name(name)


def load_run(path_or_name: str | os.PathLike) -> Run:
    """Read a finished run from its folder (or from its name under `paths.runs_dir()`)."""
    path = Path(path_or_name)
    if not path.is_dir():
        path = run_dir(str(path_or_name))
    required = ["config.json", "history.csv", "metrics.json"]
    missing = [name for name in required if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a finished run (missing {missing}). Train it with "
            "training.train(TrainConfig(...)) or `c3ae train`, or pass resume=True to finish it."
        )
    fix = f"train it again with `c3ae train --run-name {path.name} --overwrite ...`."
    config = _saved_config(path, fix)
    history = _read_history(path / "history.csv", fix)
    metrics = _read_json(path / "metrics.json", ("val_mae", "epochs"), fix)
    return Run(path=path, config=config, history=history, metrics=metrics)


def _read_json(path: Path, keys: Sequence[str], fix: str) -> dict[str, Any]:
    """The JSON object in `path`; ValueError naming the file (and `fix`, what to do) when it is
    missing, not JSON, or lacks one of `keys`."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; {fix}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); {fix}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} holds {type(values).__name__}, not a JSON object; {fix}")
    missing = [key for key in keys if key not in values]
    if missing:
        raise ValueError(f"{path} lacks {missing}; {fix}")
    return values


def _saved_config(folder: Path, fix: str) -> TrainConfig:
    """The settings in `folder`/config.json; ValueError naming the file when they are damaged."""
    path = folder / "config.json"
    values = _read_json(path, ("run_name", "cache_name", "epochs"), fix)
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} holds invalid settings ({error}); {fix}") from None


def _read_history(path: Path, fix: str) -> pd.DataFrame:
    """history.csv with its `epoch` column; ValueError naming the file when missing or damaged."""
    try:
        history = pd.read_csv(path)
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; {fix}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a readable CSV table ({error}); {fix}") from None
    if "epoch" not in history:
        raise ValueError(f"{path} has no 'epoch' column; {fix}")
    return history


def _write_json(path: Path, values: dict[str, Any]) -> None:
    """Write JSON atomically (a crash never leaves half a file)."""
    paths.write_json(path, values)


def _save_model(model: keras.Model, path: Path) -> None:
    """`model.save` atomically."""
    paths.atomic_write(path, model.save)


# --------------------------------------------------------------------------------------
# Model, compile, callbacks
# --------------------------------------------------------------------------------------


def learning_rate_schedule(
    config: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The Adam learning rate: a cosine decay over all steps to 1% of it, or a constant."""
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.01
        )
    return config.learning_rate  # "constant", and "plateau" (ReduceLROnPlateau changes it)


def compile_model(
    model: keras.Model,
    loss: str = "focal",
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.002,
    loss_weight: float = 10.0,
    bin_weights: np.ndarray | None = None,
    focal_gamma: float = 2.0,
    focal_ce_weight: float = 0.1,
    jit_compile: bool = False,
    steps_per_execution: int = 1,
) -> keras.Model:
    """Compile with Adam and the cascade loss `L1(age) + loss_weight * distribution loss`.

    Metrics: `age_mae` (years, age head) and `distribution_expected_mae` (years, the
    expectation of the distribution head over the bin values).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss={
            "age": AgeL1Loss(),
            "distribution": distribution_loss(loss, bin_weights, focal_gamma, focal_ce_weight),
        },
        loss_weights={"age": 1.0, "distribution": float(loss_weight)},
        metrics={"age": [keras.metrics.MeanAbsoluteError(name="mae")], "distribution": [ExpectedAgeMAE()]},
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    _build_training_state(model)
    return model


def _build_training_state(model: keras.Model) -> None:
    """Create the loss trackers', metrics' and optimizer's variables now, from one blank face.

    Without a distribution strategy Keras creates them inside the first traced training step,
    and TensorFlow traces a step that creates variables twice (about 3 s of every run on CPU).
    The updates this makes to the metrics are reset: fit and evaluate start from zero.
    """
    faces = np.zeros((1, *shapes.CROPS_SHAPE), np.float32)
    targets = {"age": np.zeros((1, 1), np.float32),
               "distribution": np.zeros((1, age_encoding.NUM_BINS), np.float32)}
    predictions = model(faces, training=False)
    model.compute_loss(x=faces, y=targets, y_pred=predictions, training=False)
    model.compute_metrics(faces, targets, predictions, sample_weight=None)
    model.reset_metrics()
    model.optimizer.build(model.trainable_variables)


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

    Also restores, at the start of a resumed run, the state of the early-stopping and
    plateau callbacks saved in resume.json.
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
                setattr(callback, attribute, value)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        self.rows.append({"epoch": epoch + 1, **{key: float(value) for key, value in logs.items()}})
        history = pd.DataFrame(self.rows)
        paths.atomic_write(self.folder / "history.csv", lambda temporary: history.to_csv(temporary, index=False))
        pending = self.folder / PENDING_MODEL
        _save_model(self.model, pending)
        current = logs.get(MONITOR)
        best = self.state.get("best")
        # With train_on_val the validation MAE is not held out: the last epoch is the one kept.
        if current is not None and math.isfinite(current) and (best is None or current < best or self.keep_last):
            self.state.update(best=float(current), best_epoch=epoch + 1)
        self.state.update(
            epoch=epoch + 1,
            callbacks={name: _callback_state(callback) for name, callback in self.stateful.items()},
            last_sha256=datasets.file_digest(pending),
            stopped=bool(self.model.stop_training),  # early stopping (or a NaN) ended the run here
        )
        _write_json(self.folder / "resume.json", self.state)  # the commit: the epoch is saved
        _promote_pending(self.folder, self.state)


def _promote_pending(folder: Path, state: dict[str, Any]) -> None:
    """Finish saving the epoch resume.json records: its model, `next.keras`, becomes last.keras
    (and best.keras when that epoch was the best). A `next.keras` that resume.json does not
    record (the run stopped before the commit) is deleted: last.keras is still the saved epoch."""
    pending = folder / PENDING_MODEL
    if not pending.exists():
        return
    if datasets.file_digest(pending) != state.get("last_sha256"):
        pending.unlink()
        return
    if state.get("best_epoch") == state.get("epoch"):
        paths.atomic_write(folder / "best.keras", lambda temporary: shutil.copyfile(pending, temporary))
    os.replace(pending, folder / "last.keras")


def _callback_state(callback: keras.callbacks.Callback) -> dict[str, Any]:
    """The attributes of EarlyStopping / ReduceLROnPlateau that change from epoch to epoch."""
    names = ("wait", "best", "best_epoch", "cooldown_counter")
    state = {}
    for name in names:
        if hasattr(callback, name):
            value = getattr(callback, name)
            state[name] = float(value) if isinstance(value, float | np.floating) else value
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


# --------------------------------------------------------------------------------------
# train()
# --------------------------------------------------------------------------------------


def _saved_state(folder: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The checked resume state of the run in `folder`. None when there is nothing to continue:
    no folder or an empty one, `overwrite`, or (with `resume`) a start that never finished an
    epoch. ValueError, saying what to do, for an existing run without `resume` and for saved
    files that do not match `config` or each other."""
    if config.overwrite or not folder.is_dir() or not any(folder.iterdir()):
        return None
    never_finished = (folder / "config.json").exists() and not (folder / "resume.json").exists()
    if never_finished and config.resume:
        logger.info("Run %s never finished an epoch; starting it again.", folder.name)
        return None
    if never_finished:
        raise ValueError(
            f"The run folder {folder} is from a start that never finished an epoch. Pass "
            "resume=True (`--resume`) to start it again, overwrite=True (`--overwrite`), or "
            "choose another run_name (`--run-name`)."
        )
    if not config.resume:
        raise ValueError(
            f"The run folder {folder} already exists. Pass resume=True (`--resume`) to continue "
            "it, overwrite=True (`--overwrite`) to start again, or choose another run_name."
        )
    fix = (f"pass overwrite=True (`--overwrite`) to delete {folder} and start again, or choose "
           "another run_name.")
    _check_same_settings(folder, config, fix)
    state = _read_json(folder / "resume.json", ("epoch", "best", "best_epoch"), fix)
    _check_state(folder, state, config.epochs, fix)
    return state


def _check_same_settings(folder: Path, config: TrainConfig, fix: str) -> None:
    """ValueError unless `config` repeats the settings saved in `folder`/config.json."""
    saved = _saved_config(folder, fix)
    differences = {
        name: (getattr(saved, name), getattr(config, name))
        for name in config.to_dict()
        if name not in TrainConfig.RESUMABLE_CHANGES and getattr(saved, name) != getattr(config, name)
    }
    if differences:
        raise ValueError(
            f"Cannot resume {folder}: settings differ from the saved run (saved, now): "
            f"{differences}. Use the same settings, overwrite=True (`--overwrite`), or another run_name."
        )


def _is_count(value: Any) -> bool:
    """Whether `value` is a non-negative int (JSON's true/false are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_state(folder: Path, state: dict[str, Any], epochs: int, fix: str) -> None:
    """ValueError naming the file unless resume.json, history.csv and last.keras in `folder`
    agree on the epoch reached, at most `epochs`; first finishes a save a stop interrupted."""
    epoch, best_epoch = state["epoch"], state["best_epoch"]
    if not _is_count(epoch) or epoch > epochs:
        raise ValueError(
            f"{folder / 'resume.json'} records epoch {epoch!r}, not one of 0..{epochs} "
            f"(epochs={epochs}): it does not belong to this run; {fix}"
        )
    if best_epoch is not None and not (_is_count(best_epoch) and 1 <= best_epoch <= epoch):
        raise ValueError(
            f"{folder / 'resume.json'} records best epoch {best_epoch!r}, not one of 1..{epoch}; {fix}"
        )
    if epoch == 0:
        return
    numbers = _read_history(folder / "history.csv", fix)["epoch"].tolist()
    # One row more than resume.json records: a stop between writing history.csv and resume.json.
    if len(numbers) not in (epoch, epoch + 1) or numbers[:epoch] != list(range(1, epoch + 1)):
        raise ValueError(
            f"{folder / 'history.csv'} has rows for epochs {numbers} but resume.json records "
            f"{epoch} finished epoch(s); {fix}"
        )
    _promote_pending(folder, state)
    last = folder / "last.keras"
    recorded = state.get("last_sha256")
    if not zipfile.is_zipfile(last) or (recorded is not None and datasets.file_digest(last) != recorded):
        raise ValueError(
            f"{last} is missing or is not the model of epoch {epoch} that resume.json records; {fix}"
        )


def _start_folder(folder: Path, config: TrainConfig) -> dict[str, Any]:
    """A new run folder holding config.json (deleting an earlier folder of that name first:
    `overwrite`, or a start that never finished an epoch); return its resume state."""
    if folder.exists():
        shutil.rmtree(folder)
    paths.ensure_dir(folder)
    _write_json(folder / "config.json", config.to_dict())
    return {"epoch": 0, "best": None, "best_epoch": None, "completed": False}


def _cache_command(config: TrainConfig) -> str:
    """The `c3ae cache` command that builds the face cache `config` trains on."""
    words = ["c3ae", "cache", "build-cache", "--dataset", config.dataset]
    if config.max_images is not None:
        words += ["--max-images", str(config.max_images)]
    if config.cache_name != face_cache.cache_name(config.dataset, config.max_images):
        words += ["--name", str(config.cache_name)]
    return shlex.join(words)


def _load_splits(config: TrainConfig) -> dict[str, tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
    """Crops uint8 `[m, 3, 64, 64, 3]`, ages float32 `[m]` and table rows of the train and val
    splits of the run's face cache ("train" holds the val rows too with `train_on_val`). FileNotFoundError saying how to build a missing cache;
    ValueError for a cache without both splits."""
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
    import tensorflow as tf  # see the module docstring: the losses above also run without TensorFlow

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
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _set_up_tensorflow(config: TrainConfig) -> bool:
    """Report the device, set op determinism as `config` says and seed everything; return
    whether a GPU is present."""
    import tensorflow as tf  # see the module docstring: the losses above also run without TensorFlow

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
    config: TrainConfig, folder: Path, state: dict[str, Any],
    splits: dict[str, tuple[np.ndarray, np.ndarray, pd.DataFrame]], steps: int,
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


def train(config: TrainConfig, callbacks: Sequence[keras.callbacks.Callback] = ()) -> Run:
    """Train C3AE as `config` says; write and return the run (see the module docstring).

    With `resume=True`, an unfinished run of the same name continues from its last epoch (a
    run that never finished one starts again; a finished one is returned as it is) after its
    files are checked: ValueError naming a damaged one. `callbacks` are extra Keras
    callbacks; they run after the run folder has recorded each epoch.
    """
    from c3ae_utils import pipeline  # tf.data: needs TensorFlow (see the module docstring)

    config = config.resolved()
    folder = run_dir(config.run_name)
    state = _saved_state(folder, config)
    if state is not None and state.get("completed") and (folder / "metrics.json").exists():
        logger.info("Run %s is already finished; loading it.", folder)
        return load_run(folder)
    splits = _load_splits(config)  # before the folder is made: a missing cache leaves no run behind
    if state is None:
        state = _start_folder(folder, config)
    steps = pipeline.steps_per_epoch(len(splits["train"][0]), config.batch_size)
    if state["epoch"] < config.epochs and not state.get("stopped"):
        _fit(config, folder, state, splits, steps, callbacks)
    _finish_run(folder, state, *splits["val"], config.batch_size, steps, config.train_on_val)
    return load_run(folder)


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
    _write_json(folder / "metrics.json", metrics)
    state["completed"] = True
    _write_json(folder / "resume.json", state)
    logger.info("Run %s: val MAE %.2f (expected %.2f) after %d epochs%s.", folder.name,
                metrics["val_mae"], metrics["val_expected_mae"], metrics["epochs"],
                " (in-sample: the val rows were trained on)" if val_trained_on else "")


# --------------------------------------------------------------------------------------
# FG-NET leave-one-subject-out fine-tuning (the paper's protocol)
# --------------------------------------------------------------------------------------


@dataclass
class LosoFold:
    """One held-out subject: `test` int64 `[k]` (rows of the cache), the training rows' count,
    and the predicted ages (years, `[k]`) before and after fine-tuning with the
    distributions after it (float32 `[k, num_bins]`)."""

    subject: str
    test: np.ndarray
    n_train: int
    ages_before: np.ndarray
    ages: np.ndarray
    distributions: np.ndarray


@dataclass
class LosoRun:
    """Every fold of `leave_one_subject_out` and the settings it ran with."""

    folds: list[LosoFold]
    settings: dict[str, Any]


def subject_folds(table: pd.DataFrame, num_folds: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Test positions of leave-one-subject-out folds: one int64 array per held-out subject.

    The folds come from `datasets.loso_folds` (one per subject, sorted). With `num_folds`,
    a seeded random choice of that many of them (all when None or not fewer than the subjects).
    """
    if num_folds is not None and num_folds < 1:
        raise ValueError(f"num_folds must be >= 1 or None for all subjects (got {num_folds}).")
    folds = [table.index.get_indexer(test) for _, _, test in datasets.loso_folds(table)]
    if num_folds is not None and num_folds < len(folds):
        chosen = np.sort(np.random.default_rng(seed).choice(len(folds), size=num_folds, replace=False))
        folds = [folds[i] for i in chosen]
    return [fold.astype(np.int64) for fold in folds]


def _reset_optimizer(model: keras.Model) -> None:
    """Zero the optimizer's state (moments, step count) so each fold starts fresh."""
    for variable in model.optimizer.variables:
        if variable.name != "learning_rate":  # Keras 3 keeps the learning rate among them
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))


def leave_one_subject_out(
    weights: Any,
    cache: face_cache.FaceCache | str | Path,
    num_folds: int | None = None,
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 2e-4,
    loss: str = "kl",
    seed: int = 0,
    augment: bool = True,
) -> LosoRun:
    """For each held-out subject of `cache` (FG-NET), fine-tune a copy of the model on every
    other subject for `epochs` epochs (Adam at `learning_rate`, the cascade loss with `loss`,
    the course's augmented tf.data pipeline) and predict the held-out faces.

    `weights` is anything `network.load_model` accepts (a model, run, run name or file).
    `num_folds` limits the folds to a seeded random subset of subjects; None runs all of
    them (82 on FG-NET). Every fold starts from the same weights and a fresh optimizer
    state; the model is compiled once, so its train step is traced once. The focal loss is
    used with uniform bin weights here (FG-NET's own ages are few).
    """
    from c3ae_utils import pipeline  # tf.data: needs TensorFlow (see the module docstring)

    faces_cache = face_cache.load_cache(cache)
    base = network.load_model(weights)
    model = keras.models.clone_model(base)
    initial = base.get_weights()
    model.set_weights(initial)
    compile_model(model, loss=loss, learning_rate=learning_rate)
    ages = faces_cache.table["age"].to_numpy(dtype=np.float32)
    folds = []
    for number, test in enumerate(tqdm(subject_folds(faces_cache.table, num_folds, seed), desc="LOSO folds", unit="fold")):
        train_rows = np.setdiff1d(np.arange(len(ages)), test)
        model.set_weights(initial)
        before = network.predict_ages(model, faces_cache.crops[test])["age"]
        if number > 0:
            _reset_optimizer(model)
        keras.utils.set_random_seed(seed + number)
        data = pipeline.make_dataset(
            faces_cache.crops[train_rows], ages[train_rows], training=True, batch_size=batch_size,
            seed=seed + number, augment=augment, repeat=True,
        )
        steps = pipeline.steps_per_epoch(train_rows.size, batch_size)
        # The dataset shuffles itself; shuffle=False only silences Keras' warning about it.
        model.fit(data, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)
        after = network.predict_ages(model, faces_cache.crops[test])
        subject = str(faces_cache.table["subject"].iloc[test[0]])
        folds.append(LosoFold(subject, test, int(train_rows.size), before, after["age"], after["distribution"]))
    settings = {"model": network.model_label(weights), "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "loss": loss, "seed": seed, "augment": augment}
    return LosoRun(folds, settings)


# --------------------------------------------------------------------------------------
# Command line: `python -m c3ae_utils.train` and `c3ae train`
# --------------------------------------------------------------------------------------


def _integer_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type`: an integer >= `minimum` (else a usage error naming the option)."""

    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1  # not an integer: reported like one out of range
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {text!r}")
        return value

    return integer


def _number_above(minimum: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse `type`: a finite number > `minimum` (>= when `inclusive`)."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # not a number: reported like one out of range
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(
                f"must be a number {'>=' if inclusive else '>'} {minimum:g}; got {text!r}"
            )
        return value

    return number


def _verbosity_argument(text: str) -> int | str:
    """An argparse `type` for --verbose: 0, 1, 2 or auto."""
    if text not in ("0", "1", "2", "auto"):
        raise argparse.ArgumentTypeError(f"must be 0, 1, 2 or auto; got {text!r}")
    return text if text == "auto" else int(text)


def _run_name_argument(text: str) -> str:
    """An argparse `type` for --run-name: a plain folder name (`check_run_name`)."""
    try:
        return check_run_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """The options of `c3ae train`, one per `TrainConfig` field that a person sets."""
    defaults = TrainConfig()
    parser = cli.ArgumentParser(
        prog="c3ae train", description="Train C3AE on a face cache; writes artifacts/runs/<name>/."
    )
    add = parser.add_argument
    positive, non_negative = _integer_at_least(1), _integer_at_least(0)
    add("--dataset", choices=datasets.LABELLED, default=defaults.dataset,
        help="dataset of the face cache (default utkface)")
    add("--max-images", type=positive, default=None, help="use the cache built from this many images")
    add("--cache-name", default=None, help="explicit face-cache name (overrides the two above)")
    add("--run-name", type=_run_name_argument, default=None,
        help="run folder name (default <dataset>-<loss>[-<max-images>])")
    add("--loss", choices=LOSSES, default=defaults.loss, help="distribution loss")
    add("--loss-weight", type=_number_above(0, inclusive=True), default=defaults.loss_weight,
        help="lambda of the cascade loss")
    add("--epochs", type=positive, default=defaults.epochs)
    add("--batch-size", type=positive, default=defaults.batch_size)
    add("--learning-rate", type=_number_above(0, inclusive=False), default=defaults.learning_rate)
    add("--schedule", choices=SCHEDULES, default=defaults.schedule)
    add("--patience", type=non_negative, default=defaults.patience, help="early stopping; 0: off")
    add("--seed", type=non_negative, default=defaults.seed)
    add("--train-on-val", action="store_true",
        help="also train on the validation split (the final model: needs --patience 0; keeps the last epoch)")
    add("--no-augment", dest="augment", action="store_false")
    add("--no-se", dest="use_se", action="store_false", help="no squeeze-and-excitation blocks")
    add("--no-white-norm", dest="white_norm", action="store_false")
    add("--fixed-w2", dest="learn_w2", action="store_false", help="W2 fixed to the bin values")
    add("--w2-init", choices=("bins", "random"), default=defaults.w2_init)
    add("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
        help="float16 compute (default: on with a GPU)")
    add("--jit-compile", action="store_true", help="compile the train step with XLA")
    add("--resume", action="store_true",
        help="continue an interrupted run of the same name and settings (one that never "
        "finished an epoch starts again)")
    add("--overwrite", action="store_true", help="delete an earlier run of the same name")
    add("--verbose", type=_verbosity_argument, default="auto", help="Keras fit verbosity: 0, 1, 2 or auto")
    return parser


def _resume_command(argv: Sequence[str]) -> str:
    """`c3ae train` with `argv` plus --resume, less --overwrite (it would delete what was kept)."""
    # argparse also accepts unambiguous abbreviations (`--over`): drop those too.
    kept = [word for word in argv
            if not (len(word) > 2 and any(flag.startswith(word) for flag in ("--resume", "--overwrite")))]
    return shlex.join(["c3ae", "train", *kept, "--resume"])


def _interrupted_report(config: TrainConfig, argv: Sequence[str]) -> str:
    """What the run folder of `config` kept and the command that continues it (after Ctrl-C)."""
    folder = run_dir(config.resolved().run_name)
    command = _resume_command(argv)
    try:
        epoch = int(json.loads((folder / "resume.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):  # no epoch recorded (or an unreadable record)
        epoch = 0
    if epoch:
        return f"{folder} keeps epoch {epoch} of {config.epochs} (last.keras); continue it with `{command}`."
    return f"no epoch of run {folder.name} finished, nothing to keep; start it again with `{command}`."


def main(argv: Sequence[str] | None = None) -> int:
    """`c3ae train ...`: train, then print the run folder and its metrics. After Ctrl-C, one line
    on stderr says what the run folder kept and how to resume; exit code 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = TrainConfig(**vars(build_parser().parse_args(argv)))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run = train(config)
    except KeyboardInterrupt:
        print(f"c3ae train: interrupted: {_interrupted_report(config, argv)}", file=sys.stderr)
        return 128 + signal.SIGINT  # 130, the shell's code for a command stopped by Ctrl-C
    print(f"run folder: {run.path}")
    print(json.dumps(run.metrics, indent=2))
    return 0
