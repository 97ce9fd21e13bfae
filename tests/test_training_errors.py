"""`c3ae train`'s error contract (issue 15): a bad argument, a missing cache or a damaged run
folder ends the command with one line on stderr saying what to do; Ctrl-C says what the run
folder kept and the command that resumes it (exit 130); resuming checks what it reads.

Real runs on the shared UTKFace face cache (conftest) in a private artifacts folder. Two
subprocesses only (TensorFlow's start-up costs about 5 s each): `python -m c3ae_utils.training`
with a missing cache, and a real run stopped by SIGINT (whose folder the damage tests copy).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest

from c3ae_utils import cli, course, faces, training
from c3ae_utils.training import fit

NUM_IMAGES = course.SMALL.max_images  # the shared cache (conftest)
SETTINGS = ["--dataset", "utkface", "--max-images", str(NUM_IMAGES), "--batch-size", "32",
            "--patience", "0", "--verbose", "0"]
SIGINT_EPOCHS = 3  # epochs after the first take about 1 s each: SIGINT, 0.3 s into epoch 2, lands before the end


def _train(capsys: pytest.CaptureFixture, *arguments: str) -> tuple[int, list[str]]:
    """`c3ae train ARGUMENTS` in this process: its exit code and its stderr lines."""
    capsys.readouterr()
    try:
        code = cli.main(["train", *arguments])
    except SystemExit as exit_info:  # argparse's usage errors
        code = exit_info.code
    return code, capsys.readouterr().err.strip().splitlines()


def _one_error_line(lines: list[str]) -> str:
    """The single stderr line of a failed command (`c3ae train: ...`)."""
    assert len(lines) == 1 and lines[0].startswith("c3ae train: "), lines
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.fixture()
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty artifacts folder (for tests that need no face cache)."""
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("C3AE_CACHE_DIR", str(tmp_path / "caches"))
    return tmp_path / "artifacts"


# ----------------------------------------------------------------------------- arguments

BAD_ARGUMENTS = [
    (["--epochs", "0"], "argument --epochs: must be an integer >= 1"),
    (["--epochs", "x"], "argument --epochs: must be an integer >= 1"),
    (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1"),
    (["--max-images", "0"], "argument --max-images: must be an integer >= 1"),
    (["--verbose", "abc"], "argument --verbose: must be 0, 1, 2 or auto"),
    (["--learning-rate", "nan"], "argument --learning-rate: must be a number > 0"),
    (["--dataset", "nope"], "argument --dataset: invalid choice: 'nope'"),
    (["--run-name", "a/b"], "argument --run-name: run names are plain folder names"),
    (["--run-name", "a\\b"], "argument --run-name: run names are plain folder names"),
    (["--run-name", ".."], "argument --run-name: run names are plain folder names"),
    (["--run-name", "."], "argument --run-name: run names are plain folder names"),
    (["--run-name", ".hidden"], "argument --run-name: run names are plain folder names"),
    (["--epochz", "3"], "unrecognized arguments: --epochz 3"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_ARGUMENTS, ids=lambda value: str(value))
def test_bad_arguments_are_one_line_usage_errors(arguments, message, artifacts, capsys):
    code, lines = _train(capsys, *arguments)
    line = _one_error_line(lines)
    assert code == 2 and line.startswith(f"c3ae train: error: {message}"), line
    assert line.endswith("(see `c3ae train --help`).")
    assert not artifacts.exists()  # nothing written


def test_the_python_api_rejects_the_same_settings():
    for settings in ({"run_name": ".."}, {"run_name": "a\\b"}, {"max_images": 0}, {"verbose": "abc"}):
        with pytest.raises(ValueError, match="run names|max_images|verbose"):
            training.TrainConfig(**settings)
    with pytest.raises(ValueError, match="plain folder names"):
        training.run_dir("..")


def test_ctrl_c_before_an_epoch_says_how_to_start_again(artifacts, capsys, monkeypatch):
    def interrupted(config, callbacks=()):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit, "train", interrupted)  # `c3ae train` calls fit.train
    code, lines = _train(capsys, "--run-name", "early", "--epochs", "3", "--overwrite")
    assert code == cli.INTERRUPTED == 130
    assert _one_error_line(lines) == (
        "c3ae train: interrupted: no epoch of run early finished, nothing to keep; start it again "
        "with `c3ae train --run-name early --epochs 3 --resume`."  # --overwrite would delete
    )


def test_python_m_train_ends_an_expected_error_without_traceback(artifacts):
    """`python -m c3ae_utils.training` goes through `cli.run` (subprocess 1 of 2)."""
    result = subprocess.run(
        [sys.executable, "-m", "c3ae_utils.training", "--max-images", "7"],
        capture_output=True, text=True, timeout=120, env=os.environ,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("c3ae train: error: No face cache 'utkface-n7'")
    assert "`c3ae cache build-cache --dataset utkface --max-images 7`" in last
    assert not (artifacts / "runs").exists()  # a missing cache leaves no run folder behind


# ----------------------------------------------------------------------------- caches and starts


def test_a_missing_or_unusable_cache_is_one_line_and_leaves_no_run(workspace, capsys):
    code, lines = _train(capsys, "--max-images", "7", "--run-name", "no-cache")
    line = _one_error_line(lines)
    assert code == 1 and "`c3ae cache build-cache --dataset utkface --max-images 7`" in line
    assert faces.cache_name("utkface", NUM_IMAGES) in line  # the caches that are built
    code, lines = _train(capsys, "--dataset", "fgnet", "--max-images", str(NUM_IMAGES),
                         "--run-name", "fgnet-run")
    line = _one_error_line(lines)
    assert code == 1 and "No rows in split 'val'" in line and "leave_one_subject_out" in line
    assert not training.run_dir("no-cache").exists() and not training.run_dir("fgnet-run").exists()


class SimulatedCrash(RuntimeError):
    """What `CrashAtStart` raises."""


class CrashAtStart(keras.callbacks.Callback):
    """Stops training like a crash before the first step (after the run folder was prepared)."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        raise SimulatedCrash("simulated crash before the first epoch")


def test_a_start_that_never_finished_an_epoch_starts_again_with_resume(workspace, capsys):
    config = training.TrainConfig(dataset="utkface", max_images=NUM_IMAGES, epochs=2,
                                  batch_size=32, verbose=0, run_name="never")
    with pytest.raises(SimulatedCrash):
        training.train(config, callbacks=[CrashAtStart()])
    folder = training.run_dir("never")
    assert (folder / "config.json").exists() and not (folder / "resume.json").exists()
    (folder / "last.tmp-999.keras").write_bytes(b"left by a kill")
    code, lines = _train(capsys, *SETTINGS, "--epochs", "2", "--run-name", "never")
    line = _one_error_line(lines)
    assert code == 1 and "never finished an epoch" in line and "(`--resume`) to start it again" in line
    # --resume starts it again, from a clean folder (the crash callback stops it at the start).
    with pytest.raises(SimulatedCrash):
        training.train(dataclasses.replace(config, resume=True), callbacks=[CrashAtStart()])
    assert not (folder / "last.tmp-999.keras").exists() and (folder / "config.json").exists()


# ----------------------------------------------------------------------------- Ctrl-C and resume


@pytest.fixture(scope="module")
def interrupted(workspace: Path) -> dict:
    """A real `python -m c3ae_utils.training` stopped by SIGINT once its first epoch is saved
    (subprocess 2 of 2): its exit code, stderr, argv and a copy of what its run folder kept."""
    argv = [*SETTINGS, "--epochs", str(SIGINT_EPOCHS), "--run-name", "sigint", "--overwrite"]
    folder = training.run_dir("sigint")
    process = subprocess.Popen(  # SIGINT as the terminal sends it (not ignored, as under `&`)
        [sys.executable, "-m", "c3ae_utils.training", *argv], stderr=subprocess.PIPE, text=True,
        env=os.environ, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not (folder / "resume.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into epoch 2 (about 1 s), past the last milliseconds of saving epoch 1
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    kept = workspace / "kept-after-sigint"
    shutil.copytree(folder, kept)
    return {"code": process.returncode, "stderr": stderr, "argv": argv, "kept": kept}


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_resume_finishes_the_run(interrupted, capsys):
    assert interrupted["code"] == 130, interrupted["stderr"][-3000:]
    assert "Traceback" not in interrupted["stderr"]
    last = interrupted["stderr"].strip().splitlines()[-1]
    epoch = json.loads((interrupted["kept"] / "resume.json").read_text())["epoch"]
    folder = training.run_dir("sigint")
    assert 1 <= epoch < SIGINT_EPOCHS
    assert last.startswith(f"c3ae train: interrupted: {folder} keeps epoch {epoch} of {SIGINT_EPOCHS}")
    words = shlex.split(last.split("`")[1])
    expected = [word for word in interrupted["argv"] if word != "--overwrite"]
    assert words == ["c3ae", "train", *expected, "--resume"]
    assert cli.main(words[1:]) == 0  # the command it gives finishes the run
    run = training.load_run("sigint")
    assert list(run.history["epoch"]) == list(range(1, SIGINT_EPOCHS + 1))
    printed = capsys.readouterr().out  # `c3ae train` prints the run folder, then its metrics
    assert run.metrics["epochs"] == SIGINT_EPOCHS and printed.startswith(f"run folder: {folder}\n")
    assert json.loads(printed.split("\n", 1)[1]) == run.metrics


def _damaged_copy(kept: Path, name: str) -> Path:
    """A copy of the interrupted run's folder as run `name` (config.json names its run)."""
    folder = training.run_dir(name)
    shutil.copytree(kept, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "run_name": name}))
    return folder


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _spoil_model(folder: Path, content: bytes | None) -> None:
    """last.keras replaced by `content` (None: deleted), and no pending model to recover it from."""
    (folder / training.PENDING_MODEL).unlink(missing_ok=True)
    (folder / "last.keras").unlink()
    if content is not None:
        (folder / "last.keras").write_bytes(content)


def _recorded_model(folder: Path) -> bytes:
    """The model file whose SHA-256 resume.json records (last.keras, or next.keras when the
    stop came between recording the epoch and renaming it)."""
    recorded = json.loads((folder / "resume.json").read_text())["last_sha256"]
    candidates = [folder / "last.keras", folder / training.PENDING_MODEL]
    contents = [path.read_bytes() for path in candidates if path.exists()]
    return next(content for content in contents if hashlib.sha256(content).hexdigest() == recorded)


DAMAGE = {
    "config-not-json": ("config.json", lambda f: (f / "config.json").write_text("{'epochs': 4")),
    "config-a-list": ("config.json", lambda f: (f / "config.json").write_text("[4]")),
    "config-bad-value": ("config.json", lambda f: _edit_json(f / "config.json", batch_size=0)),
    "resume-not-json": ("resume.json", lambda f: (f / "resume.json").write_text("")),
    "resume-no-epoch": ("resume.json", lambda f: (f / "resume.json").write_text('{"best": null}')),
    "resume-past-epochs": ("resume.json", lambda f: _edit_json(f / "resume.json", epoch=SIGINT_EPOCHS + 5)),
    "resume-negative": ("resume.json", lambda f: _edit_json(f / "resume.json", epoch=-1)),
    "history-missing": ("history.csv", lambda f: (f / "history.csv").unlink()),
    "history-empty": ("history.csv", lambda f: (f / "history.csv").write_text("")),
    "history-no-rows": ("history.csv", lambda f: (f / "history.csv").write_text("epoch,loss\n")),
    "last-missing": ("last.keras", lambda f: _spoil_model(f, None)),
    "last-damaged": ("last.keras", lambda f: _spoil_model(f, b"PK\x03\x04 not a model")),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_names_a_damaged_file_and_what_to_do(damage, interrupted, capsys):
    name = f"damaged-{damage}"
    file_name, spoil = DAMAGE[damage]
    folder = _damaged_copy(interrupted["kept"], name)
    spoil(folder)
    settings = [*SETTINGS, "--epochs", str(SIGINT_EPOCHS), "--run-name", name, "--resume"]
    code, lines = _train(capsys, *settings)
    line = _one_error_line(lines)
    assert code == 1 and str(folder / file_name) in line and "--overwrite" in line, line
    assert not (folder / "metrics.json").exists()  # nothing marked finished
    if damage == "resume-past-epochs":
        assert f"not one of 0..{SIGINT_EPOCHS}" in line


def test_resume_finishes_or_drops_a_half_done_save(interrupted):
    """A stop between saving an epoch's model (next.keras) and its resume.json leaves last.keras
    as it was: resume deletes next.keras. A stop after resume.json but before next.keras became
    last.keras: resume finishes the save."""
    config = training.TrainConfig(dataset="utkface", max_images=NUM_IMAGES, epochs=SIGINT_EPOCHS,
                                  batch_size=32, patience=0, verbose=0, resume=True)
    recorded = _recorded_model(interrupted["kept"])
    layouts = {  # run name: (last.keras, next.keras)
        "half-saved-dropped": (recorded, b"the model of an epoch resume.json does not record"),
        "half-saved-finished": (b"the model of the epoch before", recorded),
    }
    for name, (last, pending) in layouts.items():
        folder = _damaged_copy(interrupted["kept"], name)
        (folder / "last.keras").write_bytes(last)
        (folder / training.PENDING_MODEL).write_bytes(pending)
        with pytest.raises(SimulatedCrash):  # the checks pass; the run reaches training
            training.train(dataclasses.replace(config, run_name=name), callbacks=[CrashAtStart()])
        assert not (folder / training.PENDING_MODEL).exists(), name
        assert (folder / "last.keras").read_bytes() == recorded, name
