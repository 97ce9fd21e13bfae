"""faces.build_cache: on a Dask cluster, bad input logged, resumable, identical on any cluster.

Sample: 18 real UTKFace images, 3 real FG-NET photos and 10 generated problem files (31 rows,
chunks of 6). The reference build runs in this process; the others run on an existing Dask
cluster of two workers (reached by its client or its address) and must give the same bytes as
each other, also when interrupted and resumed, and when a worker is killed mid-chunk. The
in-process build equals them up to `FLOAT_TOLERANCE` in the float columns, and exactly in
everything else (crops, rows, paths, ages, failures): its TensorFlow keeps its default thread
pools, while cluster workers run on one thread, and on CPUs where oneDNN's sums depend on the
thread count (AVX-512) a few boxes and angles differ in their last bits.
Interruptions come from the caller's side, the way a user makes them: a progress callback
that raises (like Ctrl-C), a worker initializer that fails, a SIGKILLed worker process; the
package has no test hooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from PIL import Image

from c3ae_utils import datasets, faces, shapes

CHUNK = 6
SETUP_FAILURE = "simulated worker set-up failure"
# How far a float column of the in-process build may be from the cluster's: 15-25 times the
# largest differences seen on an AMD EPYC with AVX-512 (one face of 31 rows: its box by 6e-5 px,
# one float32 step; its angles by 4e-6 degrees; confidences equal).
FLOAT_TOLERANCE = {
    **dict.fromkeys(("box_x1", "box_y1", "box_x2", "box_y2"), 1e-3),  # pixels
    **dict.fromkeys(("yaw", "pitch", "roll"), 1e-4),  # degrees
    "confidence": 1e-6,  # probability
}


class Interrupted(Exception):
    """Raised by a test's progress callback to stop a build, as Ctrl-C would."""


def _fail_worker_setup() -> None:
    """A worker initializer that cannot start (module level: spawned workers import it)."""
    raise RuntimeError(SETUP_FAILURE)


def _write_problem_files(folder: Path, sources: list[str]) -> dict[str, str]:
    """Generated bad or awkward inputs (from real faces, never cut from the datasets' files)."""
    face = faces.read_image(sources[0])
    files = {}
    (folder / "empty.jpg").write_bytes(b"")
    files["empty"] = folder / "empty.jpg"
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 20)
    files["corrupt"] = folder / "corrupt.jpg"
    Image.fromarray(np.full((240, 240, 3), 128, np.uint8)).save(folder / "flat.jpg")
    files["no face"] = folder / "flat.jpg"
    tiles = [faces.read_image(p) for p in sources[1:5]]
    Image.fromarray(np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])).save(folder / "group.jpg")
    files["many faces"] = folder / "group.jpg"
    Image.fromarray(cv2.resize(face, (9, 9))).save(folder / "tiny.png")
    files["tiny"] = folder / "tiny.png"
    Image.fromarray(face).convert("L").save(folder / "grey.jpg")
    files["greyscale"] = folder / "grey.jpg"
    Image.fromarray(face).convert("CMYK").save(folder / "cmyk.jpg")
    files["cmyk"] = folder / "cmyk.jpg"
    Image.fromarray(np.dstack([face, np.full(face.shape[:2], 255, np.uint8)]), "RGBA").save(folder / "alpha.png")
    files["alpha"] = folder / "alpha.png"
    exif = Image.Exif()
    exif[0x0112] = 8  # stored a quarter turn clockwise; "rotate 90 counter-clockwise to display"
    Image.fromarray(np.ascontiguousarray(np.rot90(face, -1))).save(folder / "exif.jpg", exif=exif)
    files["exif rotated"] = folder / "exif.jpg"
    canvas = np.full((2600, 3400, 3), 70, np.uint8)
    canvas[800:1800, 1200:2200] = cv2.resize(face, (1000, 1000), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(canvas).save(folder / "large.jpg", quality=85)
    files["very large"] = folder / "large.jpg"
    return {kind: str(path) for kind, path in files.items()}


@pytest.fixture(scope="module")
def inputs(mirror, tmp_path_factory) -> tuple[pd.DataFrame, dict[str, str]]:
    utk = datasets.load_metadata("utkface")
    utk["split"] = datasets.split(utk, seed=0)
    fgnet = datasets.load_metadata("fgnet")
    fgnet["split"] = "test"
    real = pd.concat([datasets.subsample(utk, 18, seed=4), datasets.subsample(fgnet, 3, seed=1)], ignore_index=True)
    problems = _write_problem_files(tmp_path_factory.mktemp("problems"), real["path"].tolist())
    extra = pd.DataFrame({"path": list(problems.values()), "age": 30, "dataset": "generated", "split": "test"})
    # Interleave the problem files with the real images (the very first row is one of them).
    table = pd.concat([real, extra], ignore_index=True)
    order = np.argsort(np.r_[np.arange(len(real)) * 1.0, np.linspace(-0.5, len(real) - 0.5, len(extra))])
    return table.iloc[order].reset_index(drop=True), problems


@pytest.fixture(scope="module")
def reference_cache(inputs, tmp_path_factory) -> Path:
    """The uninterrupted build, in this process (one worker, no Dask)."""
    table, _ = inputs
    return faces.build_cache(table, tmp_path_factory.mktemp("caches") / "reference", workers=1,
                             chunk_size=CHUNK, progress=False)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """An existing Dask cluster of two worker processes, as a user would start one, reached
    through its scheduler's address."""
    with faces.cluster.local_cluster(2) as cluster, Client(cluster.scheduler_address) as connected:
        yield connected


@pytest.fixture(scope="module")
def cluster_cache(inputs, tmp_path_factory, client) -> tuple[Path, list[int]]:
    """The uninterrupted build on the cluster: its folder and the chunks it reported done.
    The cluster a build starts itself (`workers=2`) is the same `faces.cluster.local_cluster`;
    the Ctrl-C and killed-builder tests (test_cache_errors.py) start one that way."""
    table, _ = inputs
    reported: list[int] = []
    folder = faces.build_cache(table, tmp_path_factory.mktemp("caches") / "cluster", chunk_size=CHUNK,
                               progress=False, scheduler=client, on_chunk_done=reported.append)
    return folder, reported


def _wait_until_idle(client: Client, timeout: float = 60.0) -> None:
    """Until no worker runs a task: a worker thread cannot be interrupted, so a chunk that was
    running when its build stopped finishes and writes its files (atomically) after the stop."""
    deadline = time.monotonic() + timeout
    while any(client.run(lambda dask_worker: dask_worker.state.executing_count).values()):
        assert time.monotonic() < deadline, "a worker is still running a task"
        time.sleep(0.05)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _assert_same_table(path: Path, reference: Path) -> None:
    """The same rows and columns: float columns of `FLOAT_TOLERANCE` within it, the rest exactly."""
    ours, theirs = pd.read_parquet(path), pd.read_parquet(reference)
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs), path
    for column in ours:
        if column in FLOAT_TOLERANCE:
            np.testing.assert_allclose(ours[column], theirs[column], rtol=0, atol=FLOAT_TOLERANCE[column],
                                       err_msg=f"{path}: {column}")
        else:
            pd.testing.assert_series_equal(ours[column], theirs[column], check_exact=True, obj=f"{path}: {column}")


def _assert_same_up_to_float_noise(folder: Path, reference: Path) -> None:
    """The same files; those that differ are tables within `FLOAT_TOLERANCE` and the checksum
    records of those tables (every other record entry the same)."""
    ours, theirs = _digests(folder), _digests(reference)
    assert ours.keys() == theirs.keys()
    differing = {name for name in ours if ours[name] != theirs[name]}
    tables = {name for name in differing if name.endswith(".parquet")}
    records = {name for name in differing if name.endswith(".json") and name != "config.json"}
    assert differing <= tables | records, differing - tables - records  # crops, config, failures: same bytes
    for name in sorted(tables):
        _assert_same_table(folder / name, reference / name)
    for name in records:
        ours_record, theirs_record = (json.loads((root / name).read_text()) for root in (folder, reference))
        prefix = "chunks/" if name.startswith("chunks/") else ""
        for key in ours_record["files"].keys() | theirs_record["files"].keys():
            if prefix + key not in tables:
                assert ours_record["files"].get(key) == theirs_record["files"].get(key), (name, key)
        assert {**ours_record, "files": None} == {**theirs_record, "files": None}, name


def test_cache_holds_crops_table_and_failures(reference_cache, inputs):
    table, problems = inputs
    cache = faces.load_cache(reference_cache)
    assert cache.crops.dtype == np.uint8 and cache.crops.shape == (len(cache.table), *shapes.CROPS_SHAPE)
    for column in ("path", "age", "split", "yaw", "pitch", "roll", "confidence"):
        assert column in cache.table, column
    assert cache.table["split"].notna().all()
    assert np.isfinite(cache.table[["yaw", "pitch", "roll", "confidence"]].to_numpy()).all()
    reasons = dict(zip(cache.failures["path"], cache.failures["reason"], strict=True))
    assert reasons[problems["empty"]] == faces.REASON_UNREADABLE
    assert reasons[problems["corrupt"]] == faces.REASON_UNREADABLE
    assert reasons[problems["no face"]] == faces.REASON_NO_FACE
    assert reasons[problems["many faces"]] == faces.REASON_SECOND_FACE
    assert reasons[problems["tiny"]] == faces.REASON_TOO_SMALL_IMAGE
    for kind in ("greyscale", "cmyk", "alpha", "exif rotated", "very large"):
        assert problems[kind] in set(cache.table["path"]), f"{kind} image gave no face"
    # Nothing lost or duplicated: every input row is either cached or a failure, once.
    assert sorted(cache.table["path"].tolist() + cache.failures["path"].tolist()) == sorted(table["path"])
    assert cache.table["row"].is_monotonic_increasing
    real_rows = cache.table[cache.table["dataset"] == "utkface"]
    assert len(real_rows) >= 17  # at most one real face missed
    # Crops follow the table: the crops of a row equal a fresh processing of its image.
    fresh = faces.process_image(cache.table["path"].iloc[0])
    assert np.abs(fresh.faces[0].crops.astype(int) - cache.crops[0].astype(int)).mean() < 1.0
    yields = faces.yield_table({"test": cache})
    assert yields.loc["test", "images"] == len(table) and yields.loc["test", "faces cached"] == len(cache)


def test_a_cluster_of_two_builds_what_this_process_builds(reference_cache, cluster_cache, inputs):
    table, _ = inputs
    folder, reported = cluster_cache
    assert sorted(reported) == list(range(-(-len(table) // CHUNK)))  # every chunk once
    _assert_same_up_to_float_noise(folder, reference_cache)
    assert faces.load_cache(folder).crops.tobytes() == faces.load_cache(reference_cache).crops.tobytes()


def test_an_interrupted_build_resumes_on_the_cluster_to_the_same_bytes(cluster_cache, inputs, tmp_path, client):
    table, _ = inputs
    folder = tmp_path / "resumed"

    def stop_after_first_chunk(index: int) -> None:
        raise Interrupted(f"stopped after chunk {index}")

    with pytest.raises(Interrupted):
        faces.build_cache(table, folder, chunk_size=CHUNK, progress=False, scheduler=client.scheduler.address,
                          on_chunk_done=stop_after_first_chunk)
    client.cancel(list(client.futures.values()))  # nothing of that build is still queued
    _wait_until_idle(client)  # a chunk already running when the build stopped still finishes
    assert not (folder / "manifest.parquet").exists()
    num_chunks = -(-len(table) // CHUNK)
    missing = [i for i in range(num_chunks) if not (folder / "chunks" / f"chunk-{i:05d}.json").exists()]
    assert missing, "the interruption should leave chunks to do"
    # A write that was cut off leaves a temporary file behind (paths.atomic_write's naming,
    # and the naming of caches started before it); the re-run must remove them.
    (folder / "chunks" / f"chunk-{missing[0]:05d}.tmp-99999.npy").write_bytes(b"partial")
    (folder / "chunks" / f"chunk-{missing[0]:05d}.npy.tmp-99998").write_bytes(b"partial")
    redone: list[int] = []
    faces.build_cache(table, folder, chunk_size=CHUNK, progress=False, scheduler=client, on_chunk_done=redone.append)
    assert set(redone) <= set(missing) and set(redone) | set(range(num_chunks)) - set(missing) == set(range(num_chunks))
    assert _digests(folder) == _digests(cluster_cache[0])
    assert not list(folder.rglob("*tmp-*"))


def test_a_worker_killed_mid_chunk_costs_that_chunk_only(cluster_cache, inputs, tmp_path, client):
    table, _ = inputs
    killed: list[tuple[int, tuple]] = []

    def kill_a_busy_worker(index: int) -> None:
        """After the first finished chunk: SIGKILL a worker that holds a chunk."""
        busy = [worker for worker, keys in client.processing().items() if keys]
        if killed or not busy:
            return
        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
        killed.append((pid, tuple(client.processing()[busy[0]])))
        os.kill(pid, signal.SIGKILL)

    reported: list[int] = []
    folder = faces.build_cache(table, tmp_path / "killed", chunk_size=CHUNK, progress=False, scheduler=client,
                               on_chunk_done=lambda index: (reported.append(index), kill_a_busy_worker(index)))
    assert killed and killed[0][1], "a worker was killed while it held a chunk"
    assert sorted(reported) == list(range(-(-len(table) // CHUNK)))  # the lost chunk ran again, once
    assert _digests(folder) == _digests(cluster_cache[0])


def test_worker_setup_failure_stops_the_build(inputs, tmp_path, client):
    table, _ = inputs
    folder = tmp_path / "broken"
    # On the long-lived cluster whose workers already built their detectors for other builds.
    with pytest.raises(faces.cluster.WorkerFailed, match=SETUP_FAILURE):
        faces.build_cache(table.head(4), folder, chunk_size=2, progress=False, scheduler=client,
                          worker_initializer=_fail_worker_setup)
    assert not list((folder / "chunks").glob("*.parquet"))


def test_a_cache_refuses_a_different_table(reference_cache, inputs):
    table, _ = inputs
    with pytest.raises(ValueError, match="different table"):
        faces.build_cache(table.head(5), reference_cache, chunk_size=CHUNK, progress=False)


def test_load_cache_says_how_to_build_a_missing_cache(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-cache"):
        faces.load_cache(tmp_path / "nothing")
