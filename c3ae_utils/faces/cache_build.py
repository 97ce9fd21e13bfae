"""Building a face cache: `build_cache` splits a metadata table into chunk jobs, runs the
unfinished ones (in this process or on a Dask cluster) and merges their tables into the manifest.

An interrupted build resumes where it stopped (finished chunks are kept) and ends
byte-identical to an uninterrupted one on the same kind of workers; Ctrl-C raises
`BuildInterrupted` saying what was kept. A chunk counts as done only when its files match the
record written with them (`cache_checksums`), so a build run again over a damaged cache redoes
exactly what does not verify.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from distributed import Client
from tqdm.auto import tqdm

from c3ae_utils.faces.cache_chunks import ChunkJob, run_jobs
from c3ae_utils.faces.cache_files import (
    CHUNK_SIZE,
    CHUNKS,
    MANIFEST,
    cache_config,
    cache_path,
    chunk_recorded,
    chunk_verifies,
    count_crops,
    prepare_cache_folder,
    read_chunk_tables,
    remove_stale_temporaries,
    summary_verifies,
    write_summary,
)
from c3ae_utils.faces.cluster import connect
from c3ae_utils.faces.detection import Detector
from c3ae_utils.faces.processing import Settings

logger = logging.getLogger(__name__)


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `build_cache`; the message says which chunks were kept and how to resume."""


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _check_build_input(table: pd.DataFrame, chunk_size: int, workers: int | None) -> None:
    if "path" not in table:
        raise ValueError("The table needs a 'path' column; build it with datasets.load_metadata.")
    if table.empty:
        raise ValueError("Cannot build a cache from an empty table.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be positive (or None for every core), got {workers}.")


def _chunk_job(table: pd.DataFrame, index: int, chunk_size: int, folder: Path, **worker: Any) -> ChunkJob:
    """The job of chunk `index`: rows [index * chunk_size, (index + 1) * chunk_size) of `table`;
    `worker`: the settings, detector options and initializer every chunk carries."""
    start = index * chunk_size
    rows = table.iloc[start : min(start + chunk_size, len(table))]
    return ChunkJob(index, start, rows["path"].astype(str).tolist(), rows, folder=str(folder), **worker)


def build_cache(
    table: pd.DataFrame,
    cache_name: str | Path,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    settings: Settings | None = None,
    detector_options: dict | None = None,
    progress: bool = True,
    *,
    scheduler: str | Client | None = None,
    on_chunk_done: Callable[[int], None] | None = None,
    worker_initializer: Callable[[], None] | None = None,
) -> Path:
    """Preprocess every image of a metadata table into `paths.cache_dir() / cache_name`.

    `table` needs a `path` column; its other columns are kept, row-aligned with the crops.
    Images are processed in chunks of `chunk_size` rows (in table order), each chunk written
    atomically with a record of its bytes, so an interrupted build resumes where it stopped and
    ends byte-identical to an uninterrupted one (on the same kind of workers: a cluster's
    single-threaded workers, or this process; the two differ in the last bits of a few boxes
    and angles, where TensorFlow's results depend on its thread count). Run again over a
    finished cache, it checks every file and redoes what does not verify. The chunks run on a
    Dask cluster (`cluster.run_on_cluster`): by default a `LocalCluster` of `workers` processes
    (default: every core; `workers=1` works in this process instead), or the existing cluster
    at `scheduler` ("tcp://HOST:8786" or a `distributed.Client`), whose workers must see the
    same files. A worker that dies costs its chunk only (the scheduler runs it again); an
    OSError on a worker (a full disk: "no space left on device" and the file) is raised as it
    is. `settings`: the per-image policy (`Settings`); `detector_options`: keyword arguments
    of each worker's `Detector`.

    `on_chunk_done(chunk_index)` is called in this process after each chunk's files are
    written (e.g. to drive a progress display); an exception it raises stops the build,
    keeping finished chunks. `worker_initializer()` runs on each worker thread once its
    detector is ready; an exception there (or in a chunk) stops the build with
    `cluster.WorkerFailed`, a `RuntimeError`. Ctrl-C stops the build at once (queued chunks
    are dropped, running ones on a local cluster cut short; finished chunks stay whole) and
    raises `BuildInterrupted`, a `KeyboardInterrupt` saying what was kept. Worker processes
    end when this process dies. Returns the cache folder.
    """
    _check_build_input(table, chunk_size, workers)
    settings = settings or Settings()
    detector_options = dict(detector_options or {})
    table = table.reset_index(drop=True)
    folder = cache_path(cache_name)
    config = cache_config(table, chunk_size, settings, Detector(**detector_options))
    config_sha256 = prepare_cache_folder(folder, table, config)
    chunks_dir = folder / CHUNKS
    indices = range(config["num_chunks"])
    remove_stale_temporaries(chunks_dir, indices)
    jobs = [_chunk_job(table, index, chunk_size, chunks_dir, settings=settings, detector_options=detector_options,
                       worker_initializer=worker_initializer, config_sha256=config_sha256) for index in indices]
    pending = [job for job in jobs if not chunk_verifies(chunks_dir, job.index, config_sha256)]
    if pending:
        (folder / MANIFEST).unlink(missing_ok=True)  # unfinished until its chunks verify again
        try:
            _run_pending(pending, len(table), workers, scheduler, on_chunk_done, label=folder.name, progress=progress)
        except KeyboardInterrupt:
            raise BuildInterrupted(_kept_message(folder, jobs)) from None
    # A worker killed mid-write leaves a temporary file, and its chunk was written again elsewhere.
    remove_stale_temporaries(chunks_dir, indices)
    if pending or not summary_verifies(folder, config["num_chunks"]):
        _finalize(folder, config["num_chunks"], config["chunk_size"], config_sha256)
    return folder


def _kept_message(folder: Path, jobs: list[ChunkJob]) -> str:
    """What an interrupted build kept (its finished chunks) and how to resume it."""
    done = [job for job in jobs if chunk_recorded(folder / CHUNKS, job.index)]
    images = sum(len(job.image_paths) for job in done)
    return (
        f"kept {len(done)} of {len(jobs)} chunks ({images} images) finished in {folder}; "
        "run the same command again to resume from there."
    )


def _run_pending(
    pending: list[ChunkJob],
    total_images: int,
    workers: int | None,
    scheduler: str | Client | None,
    on_chunk_done: Callable[[int], None] | None,
    *,
    label: str,
    progress: bool,
) -> None:
    """Run the unfinished chunks (in this process for one worker and no scheduler, else on a
    Dask cluster) with a progress bar over all `total_images` images."""
    workers = max(1, min(workers or default_workers(), len(pending)))
    in_process = workers == 1 and scheduler is None
    where = ("this process" if in_process else f"the Dask cluster at {scheduler}" if scheduler is not None
             else f"a local Dask cluster of {workers} workers")
    logger.info("%s: %d chunks to do on %s", label, len(pending), where)
    with contextlib.ExitStack() as stack:
        client = None if in_process else stack.enter_context(connect(workers, scheduler))[0]
        done = total_images - sum(len(job.image_paths) for job in pending)
        bar = stack.enter_context(
            tqdm(total=total_images, initial=done, unit="img", desc=f"cache {label}", disable=not progress)
        )
        run_jobs(pending, client, _progress_callback(bar, on_chunk_done))


def _progress_callback(bar: tqdm, on_chunk_done: Callable[[int], None] | None) -> Callable[[int, int], None]:
    """`on_result` for `run_jobs`: advance the bar by the chunk's images, then the caller's callback."""

    def finished(index: int, images: int) -> None:
        bar.update(images)
        if on_chunk_done is not None:
            on_chunk_done(index)

    return finished


def _finalize(folder: Path, num_chunks: int, chunk_size: int, config_sha256: str) -> None:
    """Merge the chunk tables into `manifest.parquet` and `failures.csv`, after checking that
    every chunk verifies (ValueError naming the first that does not: changed during the build)."""
    for index in range(num_chunks):
        if not chunk_verifies(folder / CHUNKS, index, config_sha256):
            raise ValueError(f"{folder}: chunk {index} changed while the cache was built; run the build again.")
    table = read_chunk_tables(folder / CHUNKS, range(num_chunks))
    ok = table["status"] == "ok"
    if count_crops(folder / CHUNKS, num_chunks) != int(ok.sum()):
        raise ValueError(f"{folder}: chunk crops and tables disagree; delete the folder and rebuild.")
    manifest = table[ok].drop(columns=["status", "reason", "detail"]).reset_index(drop=True)
    failures = table[~ok][["path", "reason", "detail"]].reset_index(drop=True)
    write_summary(folder, manifest, failures, num_chunks, chunk_size)
    logger.info("%s: %d faces cached, %d failures", folder.name, len(manifest), len(failures))
