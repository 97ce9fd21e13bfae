"""`c3ae cache` and `c3ae data` under the error contract (`cli.run`), and the processes they leave.

Bad arguments and damaged data get ONE line on stderr naming the argument or file and the fix
(probed in-process: they fail before any worker starts). Two real scenarios run as
subprocesses: Ctrl-C during a build (it stops at once, says what it kept, exits 130) and a
SIGKILLed builder (its workers end with it). A SIGKILLed fetch's temporary folder is removed
by the next fetch. Sample: 40 real UTKFace images in chunks of 2.
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from c3ae_utils import cli, datasets, faces

REPO = Path(__file__).resolve().parents[1]
IMAGES = 40
CHUNK = 2
NUM_CHUNKS = IMAGES // CHUNK
STOPPED_IMAGES = 400  # the Ctrl-C test's build

# A builder killed by the test: build_cache with 2 workers, each leaving its pid in worker-pids/.
KILLED_BUILDER = '''
import os
import sys
from pathlib import Path

import pandas as pd

from c3ae_utils import faces

PIDS = Path(__file__).with_name("worker-pids")


def record_pid() -> None:
    """Worker initializer (module level: spawned workers import it): leave this worker's pid."""
    (PIDS / str(os.getpid())).touch()


if __name__ == "__main__":
    PIDS.mkdir(exist_ok=True)
    faces.build_cache(pd.read_parquet(sys.argv[1]), sys.argv[2], workers=2, chunk_size=2,
                      progress=False, worker_initializer=record_pid)
'''


@pytest.fixture(scope="module")
def sample(mirror: Path) -> pd.DataFrame:
    """40 real UTKFace rows with a `split` column."""
    table = datasets.load_metadata("utkface")
    table["split"] = datasets.split(table, seed=0)
    return datasets.subsample(table, IMAGES, seed=1).reset_index(drop=True)


@pytest.fixture
def workspace(sample: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private artifacts and caches; notebook 01's saved UTKFace table is the 40-row sample."""
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("C3AE_CACHE_DIR", str(tmp_path / "caches"))
    datasets.write_metadata_table(sample, "utkface")
    return tmp_path / "caches"


def _one_error_line(capsys: pytest.CaptureFixture, prog: str = "c3ae cache") -> str:
    """The single line a failed command wrote on stderr (asserted to be one, with the prefix)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--dataset", "morph"], ["--dataset morph", "not a known dataset", "utkface, fgnet, wiki, imdb"]),
        (["--dataset", "reference"], ["--dataset reference", "has no age labels"]),
        (["--dataset", "utkface", "--max-images", "0"], ["--max-images 0", "positive"]),
        (["--dataset", "utkface", "--chunk-size", "0"], ["--chunk-size 0", "default is 64"]),
        (["--dataset", "utkface", "--workers", "-2"], ["--workers -2", "every core"]),
        (["--dataset", "utkface", "--seed", "-1"], ["--seed -1", "non-negative"]),
        (["--dataset", "utkface", "--scheduler", "localhost:8786"], ["--scheduler localhost:8786", "tcp://HOST:8786"]),
    ],
)
def test_bad_arguments_get_one_line_naming_the_option(
    workspace: Path, capsys: pytest.CaptureFixture, arguments: list[str], expected: list[str]
) -> None:
    assert cli.main(["cache", "build-cache", *arguments]) == 1
    line = _one_error_line(capsys)
    for text in expected:
        assert text in line, line
    assert not workspace.exists(), "nothing is written for a refused command"


def test_the_module_entry_points_keep_the_contract(
    workspace: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m c3ae_utils.faces` and `python -m c3ae_utils.datasets` go through `cli.run`."""
    monkeypatch.setattr(sys, "argv", ["c3ae_utils.faces", "build-cache", "--dataset", "utkface",
                                      "--workers", "0"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("c3ae_utils.faces", run_name="__main__", alter_sys=True)
    assert exited.value.code == 1
    assert "--workers 0" in _one_error_line(capsys)
    monkeypatch.setenv("C3AE_DATA_MIRROR", str(workspace / "no-mirror"))
    monkeypatch.setenv("C3AE_DATA_DIR", str(workspace / "raw"))
    monkeypatch.setenv("C3AE_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", ["c3ae_utils.datasets", "fetch", "fgnet"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("c3ae_utils.datasets", run_name="__main__", alter_sys=True)
    assert exited.value.code == 1
    assert "C3AE_DATA_MIRROR" in _one_error_line(capsys, prog="c3ae data")


def test_an_unreachable_scheduler_gets_one_line_saying_how_to_start_one(
    workspace: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faces.cluster, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    assert cli.main(["cache", "build-cache", "--dataset", "utkface", "--scheduler", address]) == 1
    line = _one_error_line(capsys)
    assert f"cannot reach the Dask scheduler at {address}" in line and "dask worker" in line, line


def test_changed_settings_on_an_existing_cache_name_the_cache_and_the_fix(
    workspace: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = workspace / "utkface-n6"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"format": 1, "chunk_size": 3}\n')  # built with other settings
    assert cli.main(["cache", "build-cache", "--dataset", "utkface", "--max-images", "6"]) == 1
    line = _one_error_line(capsys)
    for text in ("'utkface-n6'", str(folder), "chunk_size", "--name", f"delete {folder}"):
        assert text in line, line
    assert not list((folder / "chunks").iterdir())
    (folder / "config.json").write_text('{"format": 1, "chunk_')  # cut short
    assert cli.main(["cache", "build-cache", "--dataset", "utkface", "--max-images", "6"]) == 1
    assert f"{folder / 'config.json'} is damaged" in _one_error_line(capsys)


def test_a_damaged_or_missing_mirror_file_gets_one_line(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = tmp_path / "mirror" / datasets.get_spec("fgnet").mirror[0].path
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not the FG-NET tar")
    monkeypatch.setenv("C3AE_DATA_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("C3AE_OFFLINE", "1")
    for command, prog in ((["cache", "build-cache", "--dataset", "fgnet"], "c3ae cache"),
                          (["data", "fetch", "fgnet"], "c3ae data")):
        assert cli.main(command) == 1
        line = _one_error_line(capsys, prog)
        assert str(damaged) in line and "unset C3AE_DATA_MIRROR" in line, line
    damaged.unlink()  # missing: with the network off, nothing can provide FG-NET
    assert cli.main(["cache", "build-cache", "--dataset", "fgnet"]) == 1
    line = _one_error_line(capsys)
    assert "'fgnet' is not available" in line and "C3AE_DATA_MIRROR" in line, line
    assert not (tmp_path / "raw" / "fgnet").exists()


def test_a_dataset_without_images_on_disk_is_refused(workspace: Path, mirror: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """The mirror holds wiki.mat only: every row would fail as unreadable."""
    assert cli.main(["cache", "build-cache", "--dataset", "wiki", "--max-images", "50"]) == 1
    line = _one_error_line(capsys)
    assert "--dataset wiki" in line and "c3ae data fetch wiki" in line, line
    assert not workspace.exists()


# ------------------------------------------------------------------------------ processes


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """True while `pid` runs (a zombie has ended: it only waits for its parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


def _sigint_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT handled and unblocked, as in a terminal's foreground job
    (a CI job started with `&` ignores it, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Poll `condition` until it holds; fail (with the process's stderr) if it ends or times out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gave up waiting (exit {process.poll()}): {log.read_text()[-3000:]}")
        time.sleep(0.05)


def _gone_within(pids: set[int], seconds: float) -> set[int]:
    """The processes of `pids` still running after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    return {pid for pid in pids if _running(pid)}


def _finished_chunks(folder: Path) -> list[Path]:
    """The records of the finished chunks (`chunk-NNNNN.json`, written after the chunk's files)."""
    return sorted((folder / "chunks").glob("chunk-?????.json"))


@pytest.mark.slow  # a Dask cluster in a subprocess, 400 photos: 15-35 s on 2 cores
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_ctrl_c_stops_the_build_at_once_and_says_what_it_kept(workspace: Path, tmp_path: Path) -> None:
    # 400 photos (200 chunks, 20 s or more of work): on a loaded machine 40 photos could all be
    # done between the first chunk appearing and the Ctrl-C, and the build would end normally.
    table = datasets.load_metadata("utkface")
    table["split"] = datasets.split(table, seed=0)
    datasets.write_metadata_table(datasets.subsample(table, STOPPED_IMAGES, seed=2).reset_index(drop=True), "utkface")
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        builder = subprocess.Popen(
            [sys.executable, "-m", "c3ae_utils.faces", "build-cache", "--dataset", "utkface",
             "--chunk-size", str(CHUNK), "--workers", "2", "--name", "stopped"],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO, start_new_session=True,
            preexec_fn=_sigint_as_in_a_terminal,
        )
    folder = workspace / "stopped"
    _wait_for(lambda: bool(_finished_chunks(folder)), builder, 180, log)
    children = _children(builder.pid)
    os.killpg(builder.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process of the group
    pressed = time.monotonic()
    assert builder.wait(timeout=60) == cli.INTERRUPTED
    assert time.monotonic() - pressed < 10, "the build should stop at once, not finish queued chunks"
    finished = _finished_chunks(folder)
    assert len(finished) < STOPPED_IMAGES // CHUNK, "queued chunks are dropped"
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith(f"c3ae cache: interrupted: kept {len(finished)} of {STOPPED_IMAGES // CHUNK} chunks"), last
    assert str(folder) in last and "run the same command again" in last, last
    for chunk in finished:  # finished chunks stay whole
        crops = np.load(chunk.with_suffix(".npy"))
        assert len(crops) == (pd.read_parquet(chunk.with_suffix(".parquet"))["status"] == "ok").sum()
    assert not _gone_within(children, 5), "no worker outlives the build"


@pytest.mark.slow  # a Dask cluster in a subprocess: 15-35 s on 2 cores
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_workers_end_when_the_builder_is_killed(sample: pd.DataFrame, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C3AE_CACHE_DIR", str(tmp_path / "caches"))
    script = tmp_path / "killed_builder.py"
    script.write_text(KILLED_BUILDER)
    sample.to_parquet(tmp_path / "table.parquet")
    folder = tmp_path / "caches" / "killed"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        builder = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "table.parquet"), str(folder)],
            stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO, start_new_session=True,
        )
    pids = tmp_path / "worker-pids"
    _wait_for(lambda: bool(_finished_chunks(folder)), builder, 180, log)
    workers = {int(path.name) for path in pids.iterdir()}
    children = _children(builder.pid)  # both workers and the resource tracker
    assert workers and workers <= children and len(children) >= 2
    builder.kill()
    builder.wait()
    assert not _gone_within(children, 5), "workers (and the resource tracker) end with their parent"
    assert len(_finished_chunks(folder)) < NUM_CHUNKS


# ------------------------------------------------------------------------------ fetch leftovers


def test_fetch_removes_the_folders_killed_fetches_left(mirror: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path))
    ended = subprocess.Popen(["true"])
    ended.wait()  # a pid that no longer runs
    stale = tmp_path / f".reference.partial-{ended.pid}"
    (stale / "c3ae_imdb_v89.h5").parent.mkdir(parents=True)
    (stale / "c3ae_imdb_v89.h5").write_bytes(b"\0" * 100_000)  # half copied
    replaced = tmp_path / f".reference.old-{ended.pid}"  # killed while swapping folders
    replaced.mkdir()
    running = tmp_path / f".reference.partial-{os.getppid()}"  # another fetch at work
    running.mkdir()
    folder = datasets.fetch("reference", progress=False)
    assert datasets.is_complete("reference") and (folder / "c3ae_imdb_v89.h5").stat().st_size > 100_000
    assert not stale.exists() and not replaced.exists()
    assert running.exists(), "a running fetch keeps its folder"
    stale.mkdir()  # the next fetch of a complete dataset clears leftovers too
    assert datasets.fetch("reference") == folder
    assert not stale.exists()
