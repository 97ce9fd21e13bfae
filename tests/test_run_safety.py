"""Run safety (issue 27, classes 2 and 3): a run that diverged is recorded as failed, never as a
finished, usable run; a run's JSON files are strict JSON; a model whose ages are not finite is
refused; one process at a time owns a run folder; resume refuses a face cache that changed.

Real runs on a private copy of the shared UTKFace face cache (conftest): a learning rate of
1e12 (NaN in epoch 1), a run whose first epoch starts a real second `c3ae train` subprocess
while it holds the folder, a light process that holds the lock and is killed, and a real cache
rebuilt from other images under the same name.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from c3ae_utils import cli, course, datasets, faces, network, paths, training
from c3ae_utils.network.weights import run_failure

NUM_IMAGES = course.SMALL.max_images  # the shared cache (conftest)
CACHE = "faces"  # the private copy of the shared cache every run here trains on
SETTINGS = ["--cache-name", CACHE, "--batch-size", "32", "--patience", "0", "--verbose", "0"]


def _strict_json(path: Path) -> dict:
    """The JSON object in `path`; ValueError when it holds NaN or Infinity (not JSON)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _train(capsys: pytest.CaptureFixture, *arguments: str) -> tuple[int, list[str]]:
    """`c3ae train ARGUMENTS` in this process: its exit code and its stderr lines."""
    capsys.readouterr()
    code = cli.main(["train", *arguments])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture(scope="module")
def home(face_caches: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Private artifacts and caches folders; the caches hold a copy of the shared UTKFace cache
    as `CACHE` (the fingerprint test replaces it)."""
    root = tmp_path_factory.mktemp("safety")
    shutil.copytree(face_caches / faces.cache_name("utkface", NUM_IMAGES), root / "caches" / CACHE)
    patch = pytest.MonkeyPatch()
    patch.setenv("C3AE_ARTIFACTS_DIR", str(root / "artifacts"))
    patch.setenv("C3AE_CACHE_DIR", str(root / "caches"))
    yield root
    patch.undo()


# ----------------------------------------------------------------------------- divergence


def test_a_run_whose_loss_becomes_nan_is_failed_not_finished(home, capsys):
    """Before: exit 0, resume.json `completed: true`, metrics.json with NaN, the NaN model as weights."""
    code, lines = _train(capsys, *SETTINGS, "--epochs", "2", "--learning-rate", "1e12", "--run-name", "nan")
    folder = training.run_dir("nan")
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("c3ae train: error: Run nan failed in epoch 1 (loss became nan at "
                               "learning rate 1e+12)"), lines[0]
    state = _strict_json(folder / "resume.json")
    assert state["failed"]["epoch"] == 1 and state["completed"] is False
    assert not (folder / "metrics.json").exists() and not (folder / "best.keras").exists()
    for path in folder.glob("*.json"):
        _strict_json(path)
    for load in (network.resolve_weights, network.load_model, training.load_run):
        with pytest.raises(ValueError, match="Run nan failed in epoch 1 .*lower --learning-rate"):
            load("nan")
    code, lines = _train(capsys, *SETTINGS, "--epochs", "2", "--learning-rate", "1e12",
                         "--run-name", "nan", "--resume")
    assert code == 1 and lines == [f"c3ae train: error: {run_failure(folder)}"]


class _Model(keras.Model):
    """A stand-in model whose `save` writes a small file (RunRecorder saves each epoch's model)."""

    def save(self, path: Path) -> None:
        Path(path).write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive


def test_a_validation_mae_beyond_the_age_range_fails_the_run_and_its_best_model(tmp_path):
    """Divergence without a NaN (a learning rate of 1e6 reached val MAE 145,952 years): the run
    fails at that epoch and even its earlier best.keras is refused. Before: recorded as an epoch
    like any other, and resume.json held `Infinity` for the early-stopping state."""
    config = training.TrainConfig(run_name="wild", epochs=3).resolved()
    folder = tmp_path / "wild"
    state = training.runs.start_folder(folder, config)
    stopping = keras.callbacks.EarlyStopping(monitor=training.MONITOR, patience=3)
    recorder = training.RunRecorder(folder, state, {"early_stopping": stopping})
    recorder.set_model(_Model())
    recorder.model.stop_training = False
    stopping.best = math.inf  # as Keras before 3.11 starts it: no value yet
    recorder.on_epoch_end(0, {"loss": 40.0, training.MONITOR: 20.0})
    assert _strict_json(folder / "resume.json")["callbacks"]["early_stopping"]["best"] is None
    recorder.on_epoch_end(1, {"loss": 8e5, training.MONITOR: 145_952.0})
    assert recorder.model.stop_training
    recorded = _strict_json(folder / "resume.json")
    assert recorded["failed"]["epoch"] == 2 and recorded["epoch"] == 1 and recorded["best_epoch"] == 1
    assert "145952 years" in recorded["failed"]["reason"] and "above 110" in recorded["failed"]["reason"]
    for spec in (folder, folder / "best.keras"):
        with pytest.raises(ValueError, match="Run wild failed in epoch 2"):
            network.resolve_weights(spec)


def test_settings_that_strict_json_cannot_hold_are_refused():
    """Before: TrainConfig accepted them and config.json held NaN or Infinity."""
    for name in ("learning_rate", "loss_weight", "focal_gamma"):
        for value in (math.nan, math.inf):
            with pytest.raises(ValueError, match=f"{name} must be a finite number"):
                training.TrainConfig(**{name: value})


def test_a_model_with_non_finite_ages_is_refused_never_printed(tmp_path):
    """Before: predict_ages returned NaN ages (printed as "ages nan", invalid JSON under --json)."""
    model = network.build_c3ae()
    crops = np.zeros((3, 3, 64, 64, 3), np.uint8)
    assert np.isfinite(network.predict_ages(model, crops)["age"]).all()
    model.set_weights([np.full_like(weights, np.nan) for weights in model.get_weights()])
    model.save(tmp_path / "broken.keras")
    loaded = network.load_model(tmp_path / "broken.keras")
    for flip in (False, True):
        with pytest.raises(ValueError, match="outputs non-finite ages .* for 3 of 3 faces"):
            network.predict_ages(loaded, crops, flip=flip)


# ----------------------------------------------------------------------------- one owner per run


class SimulatedCrash(RuntimeError):
    """What `SecondTrainThenCrash` raises after its second `c3ae train`."""


class SecondTrainThenCrash(keras.callbacks.Callback):
    """After epoch 1 (saved), runs a real second `c3ae train --overwrite` of the same run in a
    subprocess while this process holds the folder, keeps its result, then stops training like
    a crash (leaving a run to resume)."""

    def __init__(self, run_name: str) -> None:
        super().__init__()
        self.run_name = run_name
        self.second: subprocess.CompletedProcess | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        command = [sys.executable, "-m", "c3ae_utils.cli", "train", *SETTINGS, "--epochs", "2",
                   "--run-name", self.run_name, "--overwrite"]
        self.second = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ)
        raise SimulatedCrash("after the second c3ae train")


@pytest.fixture(scope="module")
def owned(home: Path) -> dict:
    """A run ("owned") stopped after epoch 1, during which a second `c3ae train` tried it."""
    second = SecondTrainThenCrash("owned")
    config = training.TrainConfig(cache_name=CACHE, run_name="owned", epochs=2, batch_size=32,
                                  patience=0, verbose=0)
    with pytest.raises(SimulatedCrash):
        training.train(config, callbacks=[second])
    return {"second": second.second, "config": config, "folder": training.run_dir("owned")}


def test_a_second_train_on_a_run_in_use_is_refused_naming_the_pid(owned):
    """Before: the second `c3ae train --overwrite` deleted the folder under the first and exit 0."""
    second, folder = owned["second"], owned["folder"]
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
    assert second.stderr.strip().splitlines()[-1] == (
        f"c3ae train: error: The run folder {folder} is in use by process {os.getpid()} (which holds "
        f"{folder / training.LOCK_FILE}); wait for that run to end or stop it, or choose another "
        "run_name (`--run-name`)."
    )
    # The first run's folder is untouched: its epoch 1, as it saved it.
    assert _strict_json(folder / "resume.json")["epoch"] == 1
    assert list(pd.read_csv(folder / "history.csv")["epoch"]) == [1]


def test_the_lock_dies_with_its_process(owned):
    """A process that holds the run's lock (here a light one, killed with SIGKILL) keeps every
    other out while it lives, and nothing after. Before: nothing kept anyone out."""
    folder = owned["folder"]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from c3ae_utils import paths\n"
         "with paths.hold_lock(Path(sys.argv[1]), 'run'):\n    print(flush=True); time.sleep(600)",
         str(folder / training.LOCK_FILE)],
        stdout=subprocess.PIPE, text=True, env=os.environ,
    )
    try:
        holder.stdout.readline()  # the lock is held
        resume = training.TrainConfig(**{**owned["config"].to_dict(), "resume": True})
        with pytest.raises(paths.Locked, match=f"in use by process {holder.pid} "):
            training.train(resume)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with training.runs.lock_run(folder):  # free again
        assert (folder / training.LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_resume_refuses_a_face_cache_rebuilt_from_other_faces(owned, home, capsys):
    """The cache the run started on is rebuilt (a real build) from other images under the same
    name. Before: resume trained on, mixing the two caches' training and validation faces."""
    cache_folder, folder = home / "caches" / CACHE, owned["folder"]
    started = faces.load_cache(cache_folder)
    recorded = json.loads((folder / "config.json").read_text())["cache_sha256"]
    assert recorded == training.cache_fingerprint(started.select("train").table, started.select("val").table)
    table = datasets.load_metadata("utkface")
    others = table[~table["path"].isin(started.table["path"])].head(8).copy()
    others["split"] = ["train"] * 5 + ["val"] * 3
    shutil.rmtree(cache_folder)
    faces.build_cache(others, cache_folder, progress=False, workers=1)
    code, lines = _train(capsys, *SETTINGS, "--epochs", "2", "--run-name", "owned", "--resume")
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"c3ae train: error: Cannot resume {folder}: the face cache {CACHE!r} "
                               "changed since the run started"), lines[0]
    assert _strict_json(folder / "resume.json")["epoch"] == 1 and not (folder / "metrics.json").exists()
