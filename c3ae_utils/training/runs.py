"""Run folders on disk: where they live (`run_dir`), reading a finished one (`load_run` ->
`Run`), and the resume protocol's files.

The protocol: each epoch's model is written to `next.keras` (`PENDING_MODEL`) first; writing
`resume.json` (the epoch reached, the callbacks' state and the SHA-256 of that model) is the
moment the epoch counts as saved, and only then does `next.keras` become `last.keras` (and
`best.keras`) in `promote_pending`. A stop at any moment therefore leaves a consistent
folder: `saved_state` finishes or drops a half-done save, checks every file it reads
(ValueError naming a damaged one) and says what to do; a run that never finished an epoch
starts again (`start_folder`).

Safety: one process at a time trains a run folder (`lock_run`: an OS lock on its `.lock` file,
released when the process ends however it ends; a second one gets one line naming the PID).
`config.json` records `cache_sha256`, the fingerprint of the faces the run trains and
validates on (`cache_fingerprint`), and resume refuses a cache that no longer matches
(`check_same_cache`). A run that diverged is recorded as failed in `resume.json`
(`"failed": {"epoch": ..., "reason": ...}`, written by `callbacks.RunRecorder`): it is never
resumed, loaded (`load_run`) or used as weights (`network.load_model`), only trained again
with `overwrite`. Every JSON file of a run is strict JSON (no NaN or infinity).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import pandas as pd

from c3ae_utils import datasets, network, paths
from c3ae_utils.network.weights import run_failure
from c3ae_utils.training.config import TrainConfig, check_run_name

logger = logging.getLogger(__name__)

PENDING_MODEL = "next.keras"  # an epoch's model until resume.json records that epoch
LOCK_FILE = ".lock"  # locked (flock) by the one process training the run; never deleted
CACHE_KEY = "cache_sha256"  # config.json: the fingerprint of the faces the run trains on


class RunFailed(ValueError):
    """A run that diverged (its resume.json records it as failed): one line saying when and why."""


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


def run_dir(name: str) -> Path:
    """The folder of run `name` under `paths.runs_dir()`."""
    return paths.runs_dir() / check_run_name(name)


def load_run(path_or_name: str | os.PathLike) -> Run:
    """Read a finished run from its folder (or from its name under `paths.runs_dir()`);
    `RunFailed` for a run that diverged."""
    path = Path(path_or_name)
    if not path.is_dir():
        path = run_dir(str(path_or_name))
    check_not_failed(path)
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
    metrics = paths.read_json(path / "metrics.json", ("val_mae", "epochs"), fix)
    return Run(path=path, config=config, history=history, metrics=metrics)


def _saved_config(folder: Path, fix: str) -> TrainConfig:
    """The settings in `folder`/config.json; ValueError naming the file when they are damaged."""
    path = folder / "config.json"
    values = paths.read_json(path, ("run_name", "cache_name", "epochs"), fix)
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


def check_not_failed(folder: Path) -> None:
    """`RunFailed` (in which epoch and why, and what to do) when the run in `folder` diverged."""
    failure = run_failure(folder)
    if failure is not None:
        raise RunFailed(failure)


@contextmanager
def lock_run(folder: Path) -> Iterator[None]:
    """Own the run folder for a `with` block: its `.lock` file (created with the folder) is
    flock-ed (`paths.hold_lock`), so a second process (or a second `train` in this one)
    training, resuming or overwriting the same run is refused with `paths.Locked`, one line
    naming the PID; the lock dies with its process."""
    advice = "wait for that run to end or stop it, or choose another run_name (`--run-name`)"
    with paths.hold_lock(folder / LOCK_FILE, f"The run folder {folder}", advice):
        yield


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds anything of a run (its lock file alone is nothing)."""
    return folder.is_dir() and any(child.name != LOCK_FILE for child in folder.iterdir())


def cache_fingerprint(*tables: pd.DataFrame) -> str:
    """SHA-256 (hex) of the faces a run trains and validates on: for each row of `tables`, in
    order, its image path (relative to `paths.raw_dir()` when inside it, so a moved course
    home keeps the fingerprint), age and split. A cache rebuilt from other images, or with
    other labels or splits, has another one."""
    raw = paths.raw_dir()
    digest = hashlib.sha256()
    for table in tables:
        columns = [table[name].astype(str) if name in table else pd.Series("", index=table.index)
                   for name in ("path", "age", "split")]
        for image, age, split in zip(*columns, strict=True):
            relative = Path(image).relative_to(raw).as_posix() if Path(image).is_relative_to(raw) else image
            digest.update(json.dumps([relative, age, split]).encode() + b"\n")
        digest.update(b"\0")  # where one table ends
    return digest.hexdigest()


def check_same_cache(folder: Path, config: TrainConfig, fingerprint: str) -> None:
    """ValueError unless the faces `config`'s cache gives now (`fingerprint`) are those the run
    in `folder` started on (config.json's `cache_sha256`; a run saved before runs recorded it
    resumes with a warning)."""
    saved = paths.read_json(folder / "config.json").get(CACHE_KEY)
    if saved is None:
        logger.warning("Run %s records no face-cache fingerprint: resuming without checking its cache.",
                       folder.name)
    elif saved != fingerprint:
        raise ValueError(
            f"Cannot resume {folder}: the face cache {config.cache_name!r} changed since the run "
            f"started (other images, ages or splits: fingerprint {saved[:12]}... then, "
            f"{fingerprint[:12]}... now), and resuming would mix its training and validation faces. "
            "Resume with the cache it started on, or pass overwrite=True (`--overwrite`) to train "
            "again on this one."
        )


def promote_pending(folder: Path, state: dict[str, Any]) -> None:
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


def saved_state(folder: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The checked resume state of the run in `folder`. None when there is nothing to continue:
    no folder or an empty one, `overwrite`, or (with `resume`) a start that never finished an
    epoch. ValueError, saying what to do, for an existing run without `resume`, for saved
    files that do not match `config` or each other, and (`RunFailed`) for a failed run."""
    if config.overwrite or not holds_run(folder):
        return None
    check_not_failed(folder)  # never resumed: trained again with `overwrite`
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
    state = paths.read_json(folder / "resume.json", ("epoch", "best", "best_epoch"), fix)
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
    promote_pending(folder, state)
    last = folder / "last.keras"
    recorded = state.get("last_sha256")
    if not zipfile.is_zipfile(last) or (recorded is not None and datasets.file_digest(last) != recorded):
        raise ValueError(
            f"{last} is missing or is not the model of epoch {epoch} that resume.json records; {fix}"
        )


def start_folder(folder: Path, config: TrainConfig, cache_sha256: str | None = None) -> dict[str, Any]:
    """A new run folder holding config.json, with `cache_sha256` (`cache_fingerprint`) when
    given (emptying an earlier folder of that name first, all but its lock: `overwrite`, or a
    start that never finished an epoch); return its resume state."""
    paths.ensure_dir(folder)
    for child in folder.iterdir():
        if child.name == LOCK_FILE:  # held by this process (`lock_run`): deleting it would free it
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    recorded = {} if cache_sha256 is None else {CACHE_KEY: cache_sha256}
    paths.write_json(folder / "config.json", {**config.to_dict(), **recorded}, allow_nan=False)
    return {"epoch": 0, "best": None, "best_epoch": None, "completed": False}
