"""The face cache: a whole metadata table preprocessed once, on every core, into crops on disk.

`build_cache(table, cache_name)` runs `processing.process_images` (training policy by
default) over the table's `path` column in chunks, on a Dask cluster (`faces.cluster`: a
local one of worker processes, or an existing one), and `load_cache(cache_name)` gives the
result back as a `FaceCache`. From a terminal:

    python -m c3ae_utils.faces build-cache --dataset utkface [--max-images N]
        [--workers K | --scheduler tcp://HOST:8786]      (also `c3ae cache build-cache ...`)

Layout (`paths.cache_dir() / cache_name /`):

| file | content |
| --- | --- |
| `config.json` | the settings the cache was built with (a re-run must match them) |
| `table.parquet` | the input metadata table, in processing order |
| `chunks/chunk-NNNNN.npy` | uint8 `[k, 3, 64, 64, 3]`: the crops of the chunk's k usable faces |
| `chunks/chunk-NNNNN.parquet` | one row per input image of the chunk: metadata, status, reason, pose |
| `manifest.parquet` | every usable face, row-aligned with the concatenated crops |
| `failures.csv` | path, reason, detail for every image that gave no usable face |

Crops are RGB, ordered outer/middle/inner (`shapes.SCALE_NAMES`), raw 0-255 values; they
take 3 x 64 x 64 x 3 = 36,864 bytes per face, about 369 MB per 10,000 faces. Every file is
written atomically (`paths.atomic_write`), so an interrupted build resumes where it stopped
and ends byte-identical to an uninterrupted one. Ctrl-C stops the workers at once and says
what was kept; workers also end when the process that started them dies.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from distributed import Client
from tqdm.auto import tqdm

from c3ae_utils import cli, datasets, paths
from c3ae_utils.faces.cluster import connect, run_on_cluster
from c3ae_utils.faces.detection import Detector
from c3ae_utils.faces.images import REASON_TOO_SMALL_IMAGE, REASON_UNREADABLE
from c3ae_utils.faces.processing import (
    REASON_NO_FACE,
    REASON_SECOND_FACE,
    REASON_SMALL_FACE,
    ProcessedFace,
    ProcessResult,
    Settings,
    process_images,
)
from c3ae_utils.shapes import CHANNELS, CROP_SIZE, NUM_SCALES

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
MANIFEST = "manifest.parquet"  # written last by `_finalize`: a cache with it is finished
CHUNK_SIZE = 64  # images per chunk file
RESULT_COLUMNS = (
    "row",
    "face_index",
    "status",
    "reason",
    "detail",
    "confidence",
    "yaw",
    "pitch",
    "roll",
    "box_x1",
    "box_y1",
    "box_x2",
    "box_y2",
    "chip_source",
)
_FLOAT_COLUMNS = ("confidence", "yaw", "pitch", "roll", "box_x1", "box_y1", "box_x2", "box_y2")
_TEXT_COLUMNS = ("status", "reason", "detail", "chip_source")


@dataclass
class FaceCache:
    """A loaded face cache.

    `crops`: uint8 [n, 3, 64, 64, 3] (outer, middle, inner; RGB); `table`: n rows aligned
    with `crops`: the metadata columns (path, age, gender, ..., split) plus yaw, pitch, roll
    (degrees), confidence and the face box (pixels of the original image); `failures`:
    path, reason, detail per image that gave no usable face; `path`: the cache folder.
    """

    crops: np.ndarray
    table: pd.DataFrame
    failures: pd.DataFrame
    path: Path

    def __len__(self) -> int:
        return len(self.table)

    def select(self, split: str) -> FaceCache:
        """The faces of one split ("train", "val", "test", or "all"; `datasets.select_split`):
        a `FaceCache` with those crops and table rows (index reset), failures unchanged."""
        positions = datasets.select_split(self.table, split)
        return FaceCache(self.crops[positions], self.table.iloc[positions].reset_index(drop=True),
                         self.failures, self.path)


def cache_name(dataset: str, max_images: int | None = None, settings: Settings | None = None) -> str:
    """The cache folder name of a dataset: "utkface" for all images, "utkface-n400" for 400.

    Preprocessing `settings` other than the defaults add a tag of the changed values
    ("utkface-n400-s1a2b3c"), so a cache built with other settings never collides with these.
    """
    if not dataset or "/" in dataset:
        raise ValueError(f"Invalid dataset name {dataset!r}.")
    name = dataset if max_images is None else f"{dataset}-n{int(max_images)}"
    tag = paths.settings_tag(settings) if settings is not None else ""
    return f"{name}-s{tag}" if tag else name


def cache_path(name_or_path: str | Path) -> Path:
    """The folder of a cache given its name (under `paths.cache_dir()`) or its path."""
    candidate = Path(name_or_path)
    if candidate.is_absolute() or len(candidate.parts) > 1:
        return candidate
    return paths.cache_dir() / str(name_or_path)


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------
# Files of a cache
# --------------------------------------------------------------------------------------


def _chunk_stem(index: int) -> str:
    return f"chunk-{index:05d}"


def _write_parquet(table: pd.DataFrame, target: Path) -> None:
    paths.atomic_write(target, lambda temporary: table.to_parquet(temporary, index=False))


def _write_npy(array: np.ndarray, target: Path) -> None:
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    paths.atomic_write(target, write)


def _chunk_complete(folder: Path, index: int) -> bool:
    """True when both files of chunk `index` exist in `folder` (the parquet is written last)."""
    stem = _chunk_stem(index)
    return (folder / f"{stem}.parquet").exists() and (folder / f"{stem}.npy").exists()


def _remove_stale_temporaries(folder: Path, chunks: Iterable[int]) -> None:
    """Delete the temporary files an interrupted run left for these chunks.

    `paths.atomic_write` names them `chunk-NNNNN.tmp-PID.npy`; caches started before it
    was used have `chunk-NNNNN.npy.tmp-PID`.
    """
    for index in chunks:
        stem = _chunk_stem(index)
        for pattern in (f"{stem}.tmp-*", f"{stem}.*.tmp-*"):
            for stale in folder.glob(pattern):
                stale.unlink(missing_ok=True)


def _read_chunk_tables(chunks_dir: Path, indices: Iterable[int]) -> pd.DataFrame:
    frames = [pd.read_parquet(chunks_dir / f"{_chunk_stem(index)}.parquet") for index in indices]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _table_fingerprint(table: pd.DataFrame) -> str:
    """SHA-256 of the table's columns and values in order: identifies the input of a cache
    (a changed split or label makes a different cache, never a silently stale one)."""
    digest = hashlib.sha256(json.dumps([str(c) for c in table.columns]).encode())
    digest.update(pd.util.hash_pandas_object(table.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _cache_config(table: pd.DataFrame, chunk_size: int, settings: Settings, detector: Detector) -> dict:
    """The content of `config.json`: input fingerprint, chunking, settings, detector options."""
    return {
        "format": CACHE_FORMAT,
        "num_images": int(len(table)),
        "chunk_size": int(chunk_size),
        "num_chunks": int(math.ceil(len(table) / chunk_size)),
        "table_sha256": _table_fingerprint(table),
        "settings": {key: getattr(settings, key) for key in Settings.__dataclass_fields__},
        "detector": {
            "max_side": detector.max_side,
            "min_side": detector.min_side,
            "thresholds": list(detector.thresholds),
            "retry_thresholds": list(detector.retry_thresholds),
            "retry_padding": detector.retry_padding,
            "batch_size": detector.batch_size,
        },
    }


def _config_differences(old: dict, new: dict) -> list[str]:
    """The entries (dotted keys; "the table" for the input fingerprint) where two configs differ."""
    found = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            found += [f"{key}.{inner}" for inner in sorted(set(before) | set(after))
                      if before.get(inner) != after.get(inner)]
        elif before != after:
            found.append("the table" if key == "table_sha256" else key)
    return found


def _read_existing_config(config_file: Path) -> dict:
    """The `config.json` of an existing cache folder; ValueError naming it when it is damaged."""
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{config_file} is damaged ({error}); delete the folder {config_file.parent} and build "
            "the cache again."
        ) from None


def _prepare_cache_folder(folder: Path, table: pd.DataFrame, config: dict) -> None:
    """Create the folder, or check that an existing one was started with the same input."""
    paths.ensure_dir(folder / "chunks")
    config_file = folder / "config.json"
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    if config_file.exists():
        differences = _config_differences(_read_existing_config(config_file), json.loads(text))
        if differences:
            raise ValueError(
                f"Cache {folder.name!r} in {folder} holds a cache built from a different table or "
                f"with other settings (differs: {', '.join(differences)}). Choose another cache "
                f"name (`--name` of `c3ae cache build-cache`), or delete {folder} to rebuild it."
            )
    else:
        paths.write_text_atomic(config_file, text)
    if not (folder / "table.parquet").exists():
        _write_parquet(table, folder / "table.parquet")


# --------------------------------------------------------------------------------------
# One chunk's rows
# --------------------------------------------------------------------------------------


def _failure_record(row: int, result: ProcessResult) -> dict:
    return {"row": row, "face_index": -1, "status": "failed", "reason": result.reason,
            "detail": result.detail, "chip_source": ""}


def _face_record(row: int, face_index: int, processed: ProcessedFace) -> dict:
    x1, y1, x2, y2 = (float(v) for v in processed.face.box)
    return {
        "row": row, "face_index": face_index, "status": "ok", "reason": "", "detail": "",
        "confidence": processed.face.confidence, "yaw": processed.yaw,
        "pitch": processed.pitch, "roll": processed.roll, "box_x1": x1, "box_y1": y1,
        "box_x2": x2, "box_y2": y2, "chip_source": processed.aligned.source,
    }


def _typed_frame(records: list[dict]) -> pd.DataFrame:
    """The records as a `RESULT_COLUMNS` table with fixed dtypes (NaN / "" where missing)."""
    frame = pd.DataFrame.from_records(records, columns=list(RESULT_COLUMNS))
    for column in ("row", "face_index"):
        frame[column] = frame[column].astype(np.int64)
    for column in _FLOAT_COLUMNS:
        frame[column] = frame[column].astype(np.float64)
    for column in _TEXT_COLUMNS:
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def _result_rows(
    results: Sequence[ProcessResult], rows: Sequence[int], crop_size: int = CROP_SIZE
) -> tuple[pd.DataFrame, np.ndarray]:
    """One table row per kept face (or per failed image) and the crops, uint8 [k, 3, s, s, 3]."""
    records, crops = [], []
    for row, result in zip(rows, results, strict=True):
        if not result.ok:
            records.append(_failure_record(row, result))
            continue
        for face_index, processed in enumerate(result.faces):
            records.append(_face_record(row, face_index, processed))
            crops.append(processed.crops)
    empty_shape = (0, NUM_SCALES, crop_size, crop_size, CHANNELS)
    stacked = np.stack(crops) if crops else np.zeros(empty_shape, dtype=np.uint8)
    return _typed_frame(records), stacked


# --------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChunkJob:
    """One chunk for a worker: its index, first row, image paths and metadata rows, and how
    the worker builds its detector (`one_thread`: cap OpenCV and TensorFlow to one thread,
    for workers that are processes of their own)."""

    index: int
    start: int
    image_paths: list[str]
    metadata: pd.DataFrame
    settings: Settings
    folder: str
    detector_options: dict
    worker_initializer: Callable[[], None] | None = None
    one_thread: bool = True


# One Detector per worker thread, built by the thread's first chunk (a Dask worker may run
# several threads; MTCNN's networks are built once per thread, not once per chunk).
_THREAD_STATE = threading.local()


def _use_one_thread_per_library() -> None:
    """Keep OpenCV and TensorFlow to one thread each: the cluster already uses every core."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    cv2.setNumThreads(1)
    # Lazy: TensorFlow is heavy; only worker processes need it here, to cap its thread
    # pools before mtcnn builds its networks.
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # already initialised (a worker that ran TF before)
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _chunk_detector(job: _ChunkJob) -> Detector:
    """This thread's detector for `job`'s options, built, warmed up and followed by the job's
    `worker_initializer` the first time (an exception there fails the chunk, and the build)."""
    initializer = job.worker_initializer
    # A new initializer on a long-lived worker (an existing cluster) runs too: it is part of the key.
    key = json.dumps([job.detector_options, getattr(initializer, "__module__", None),
                      getattr(initializer, "__qualname__", None)], sort_keys=True, default=str)
    detectors = getattr(_THREAD_STATE, "detectors", None)
    if detectors is None:
        detectors = _THREAD_STATE.detectors = {}
    if key not in detectors:
        if job.one_thread:
            _use_one_thread_per_library()
        detector = Detector(**job.detector_options)
        detector.detect(np.zeros((64, 64, 3), dtype=np.uint8))  # builds and warms up the networks
        if job.worker_initializer is not None:
            job.worker_initializer()
        detectors[key] = detector
    return detectors[key]


def _process_chunk(job: _ChunkJob) -> tuple[int, int, int]:
    """Process one chunk on a worker and write its files; returns (chunk, images, faces)."""
    rows = list(range(job.start, job.start + len(job.image_paths)))
    results = process_images(job.image_paths, detector=_chunk_detector(job), settings=job.settings)
    frame, crops = _result_rows(results, rows, job.settings.crop_size)
    metadata = job.metadata.reset_index(drop=True)
    frame = metadata.iloc[frame["row"].to_numpy() - job.start].reset_index(drop=True).join(frame)
    stem = _chunk_stem(job.index)
    _write_npy(crops, Path(job.folder) / f"{stem}.npy")
    _write_parquet(frame, Path(job.folder) / f"{stem}.parquet")  # written last: marks the chunk complete
    return job.index, len(rows), len(crops)


def _run_jobs(jobs: list[_ChunkJob], client: Client | None, on_result: Callable[[int, int], None]) -> None:
    """Run chunk jobs on the cluster of `client`, or one after another in this process when
    it is None; `on_result(chunk, images)` here after each finished chunk."""
    if client is None:
        for job in jobs:
            index, images, _ = _process_chunk(dataclasses.replace(job, one_thread=False))
            on_result(index, images)
        return
    run_on_cluster(client, _process_chunk, jobs, lambda done: on_result(done[0], done[1]), name="c3ae-chunk")


# --------------------------------------------------------------------------------------
# Building, finishing and loading
# --------------------------------------------------------------------------------------


def _check_build_input(table: pd.DataFrame, chunk_size: int, workers: int | None) -> None:
    if "path" not in table:
        raise ValueError("The table needs a 'path' column; build it with datasets.load_metadata.")
    if table.empty:
        raise ValueError("Cannot build a cache from an empty table.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be positive (or None for every core), got {workers}.")


def _chunk_job(table: pd.DataFrame, index: int, chunk_size: int, folder: Path, **worker: Any) -> _ChunkJob:
    """The job of chunk `index`: rows [index * chunk_size, (index + 1) * chunk_size) of `table`;
    `worker`: the settings, detector options and initializer every chunk carries."""
    start = index * chunk_size
    rows = table.iloc[start : min(start + chunk_size, len(table))]
    return _ChunkJob(index, start, rows["path"].astype(str).tolist(), rows, folder=str(folder), **worker)


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
    atomically, so an interrupted build resumes where it stopped and ends byte-identical to
    an uninterrupted one. The chunks run on a Dask cluster (`cluster.run_on_cluster`): by
    default a `LocalCluster` of `workers` processes (default: every core; `workers=1` works in
    this process instead), or the existing cluster at `scheduler` ("tcp://HOST:8786" or a
    `distributed.Client`), whose workers must see the same files. A worker that dies costs
    its chunk only (the scheduler runs it again). `settings`: the per-image policy
    (`Settings`); `detector_options`: keyword arguments of each worker's `Detector`.

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
    config = _cache_config(table, chunk_size, settings, Detector(**detector_options))
    _prepare_cache_folder(folder, table, config)
    chunks_dir = folder / "chunks"
    indices = range(config["num_chunks"])
    _remove_stale_temporaries(chunks_dir, indices)
    jobs = [_chunk_job(table, index, chunk_size, chunks_dir, settings=settings, detector_options=detector_options,
                       worker_initializer=worker_initializer) for index in indices]
    pending = [job for job in jobs if not _chunk_complete(chunks_dir, job.index)]
    if pending:
        try:
            _run_pending(pending, len(table), workers, scheduler, on_chunk_done, label=folder.name, progress=progress)
        except KeyboardInterrupt:
            raise BuildInterrupted(_kept_message(folder, jobs)) from None
    # A worker killed mid-write leaves a temporary file, and its chunk was written again elsewhere.
    _remove_stale_temporaries(chunks_dir, indices)
    if not is_finished(folder):
        _finalize(folder, config["num_chunks"])
    return folder


class BuildInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `build_cache`; the message says which chunks were kept and how to resume."""


def _kept_message(folder: Path, jobs: list[_ChunkJob]) -> str:
    """What an interrupted build kept (its finished chunks) and how to resume it."""
    done = [job for job in jobs if _chunk_complete(folder / "chunks", job.index)]
    images = sum(len(job.image_paths) for job in done)
    return (
        f"kept {len(done)} of {len(jobs)} chunks ({images} images) finished in {folder}; "
        "run the same command again to resume from there."
    )


def _run_pending(
    pending: list[_ChunkJob],
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
        _run_jobs(pending, client, _progress_callback(bar, on_chunk_done))


def _progress_callback(bar: tqdm, on_chunk_done: Callable[[int], None] | None) -> Callable[[int, int], None]:
    """`on_result` for `_run_jobs`: advance the bar by the chunk's images, then the caller's callback."""

    def finished(index: int, images: int) -> None:
        bar.update(images)
        if on_chunk_done is not None:
            on_chunk_done(index)

    return finished


def _count_crops(chunks_dir: Path, num_chunks: int) -> int:
    """Faces stored in the chunks' `.npy` files (read from their headers)."""
    return sum(
        np.load(chunks_dir / f"{_chunk_stem(index)}.npy", mmap_mode="r").shape[0]
        for index in range(num_chunks)
    )


def _finalize(folder: Path, num_chunks: int) -> None:
    """Merge the (complete) chunk tables into `manifest.parquet` and `failures.csv`."""
    table = _read_chunk_tables(folder / "chunks", range(num_chunks))
    ok = table["status"] == "ok"
    if _count_crops(folder / "chunks", num_chunks) != int(ok.sum()):
        raise ValueError(f"{folder}: chunk crops and tables disagree; delete the folder and rebuild.")
    manifest = table[ok].drop(columns=["status", "reason", "detail"]).reset_index(drop=True)
    failures = table[~ok][["path", "reason", "detail"]].reset_index(drop=True)
    paths.write_text_atomic(folder / "failures.csv", failures.to_csv(index=False))
    _write_parquet(manifest, folder / MANIFEST)  # last: its presence marks the cache finished
    logger.info("%s: %d faces cached, %d failures", folder.name, len(manifest), len(failures))


def _concatenate_crops(folder: Path, num_chunks: int, num_faces: int, crop_size: int) -> np.ndarray:
    """The chunks' crops in order, one uint8 [num_faces, 3, s, s, 3] array in memory."""
    crops = np.empty((num_faces, NUM_SCALES, crop_size, crop_size, CHANNELS), dtype=np.uint8)
    start = 0
    for index in range(num_chunks):
        part = np.load(folder / "chunks" / f"{_chunk_stem(index)}.npy", mmap_mode="r")
        crops[start : start + len(part)] = part
        start += len(part)
    if start != num_faces:
        raise ValueError(f"{folder}: {start} crops for {num_faces} table rows; rebuild the cache.")
    return crops


def is_finished(name_or_path: str | Path) -> bool:
    """Whether the cache is finished: the build writes its manifest last."""
    return (cache_path(name_or_path) / MANIFEST).exists()


def finished_caches() -> list[str]:
    """Names of the finished caches in `paths.cache_dir()`, sorted."""
    return sorted(manifest.parent.name for manifest in paths.cache_dir().glob(f"*/{MANIFEST}"))


def load_cache(name_or_path: str | Path | FaceCache) -> FaceCache:
    """Load a finished cache: crops uint8 [n, 3, 64, 64, 3], table (n rows), failures.
    A `FaceCache` passed in is returned as it is."""
    if isinstance(name_or_path, FaceCache):
        return name_or_path
    folder = cache_path(name_or_path)
    if not is_finished(folder):
        raise FileNotFoundError(
            f"No finished face cache at {folder}. Build it with faces.build_cache (notebook 02) or "
            "`python -m c3ae_utils.faces build-cache --dataset NAME`."
        )
    config = json.loads((folder / "config.json").read_text())
    table = pd.read_parquet(folder / MANIFEST)
    failures = pd.read_csv(folder / "failures.csv", keep_default_na=False)
    crops = _concatenate_crops(folder, config["num_chunks"], len(table), config["settings"]["crop_size"])
    return FaceCache(crops, table, failures, folder)


def yield_table(caches: dict[str, FaceCache]) -> pd.DataFrame:
    """How many images survive each step, one row per cache: counts and the final yield (%)."""
    rows = {}
    for name, cache in caches.items():
        reasons = cache.failures["reason"].value_counts()
        images = int(cache.table["path"].nunique() + len(cache.failures))
        readable = images - int(reasons.get(REASON_UNREADABLE, 0)) - int(reasons.get(REASON_TOO_SMALL_IMAGE, 0))
        found = readable - int(reasons.get(REASON_NO_FACE, 0))
        single = found - int(reasons.get(REASON_SECOND_FACE, 0))
        large = single - int(reasons.get(REASON_SMALL_FACE, 0))
        rows[name] = {
            "images": images,
            "readable": readable,
            "face found": found,
            "no second face": single,
            "face large enough": large,
            "faces cached": len(cache),
            "yield %": round(100.0 * large / images, 2) if images else float("nan"),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The options of `c3ae cache` (`python -m c3ae_utils.faces`)."""
    parser = cli.ArgumentParser(prog="c3ae cache", description="Detect, align and crop faces into a cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-cache", help="preprocess a dataset into paths.cache_dir()/NAME")
    build.add_argument("--dataset", required=True, help="utkface, fgnet, wiki or imdb")
    build.add_argument("--max-images", type=int, default=None, help="a subsample of this many images")
    build.add_argument("--seed", type=int, default=0, help="seed of the split and the subsample")
    build.add_argument("--workers", type=int, default=None,
                       help="worker processes of the local Dask cluster (default: every core)")
    build.add_argument("--scheduler", default=None,
                       help="address of an existing Dask scheduler (tcp://HOST:8786) whose workers see the same files")
    build.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="images per chunk file")
    build.add_argument("--name", default=None, help="cache name (default: faces.cache_name)")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    """ValueError naming the option, for `build-cache` values argparse lets through."""
    if args.dataset not in datasets.LABELLED:
        problem = "has no age labels" if args.dataset in datasets.REGISTRY else "is not a known dataset"
        raise ValueError(f"--dataset {args.dataset}: {problem}; choose one of {', '.join(datasets.LABELLED)}.")
    counts = (("--max-images", args.max_images, "leave it out for every image"),
              ("--workers", args.workers, "leave it out for every core"),
              ("--chunk-size", args.chunk_size, f"the default is {CHUNK_SIZE}"))
    for option, value, default in counts:
        if value is not None and value < 1:
            raise ValueError(f"{option} {value}: give a positive number ({default}).")
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed}: give a non-negative integer (the default is 0).")
    if args.scheduler is not None and "://" not in args.scheduler:
        raise ValueError(f"--scheduler {args.scheduler}: give the scheduler's address, e.g. tcp://HOST:8786.")


def _check_images_on_disk(table: pd.DataFrame, dataset: str) -> None:
    """ValueError when none of the table's images exist (IMDB-WIKI from the mirror: `.mat` only)."""
    if "image_available" in table and not table["image_available"].any():
        raise ValueError(
            f"--dataset {dataset}: none of the {len(table):,} images it lists is on disk (the data mirror holds "
            f"{dataset}.mat only). Unset {datasets.MIRROR_VARIABLE}, delete "
            f"{paths.raw_dir() / dataset} and run `c3ae data fetch {dataset}` to download the images."
        )


def _build_from_arguments(args: argparse.Namespace) -> Path:
    """`build-cache`: subsample the dataset's table, build its cache, print its yield."""
    _check_arguments(args)
    table = datasets.subsample(datasets.metadata_table(args.dataset, args.seed), args.max_images, seed=args.seed)
    _check_images_on_disk(table, args.dataset)
    name = args.name or cache_name(args.dataset, args.max_images)
    folder = build_cache(table, name, workers=args.workers, chunk_size=args.chunk_size,
                         scheduler=args.scheduler)
    if is_finished(folder):
        print(yield_table({name: load_cache(folder)}).to_string())
    return folder


def main(argv: list[str] | None = None) -> int:
    """`python -m c3ae_utils.faces build-cache ...` (also `c3ae cache ...`), run under
    `cli.run`: bad arguments and files raise ValueError / OSError (one line on stderr there);
    Ctrl-C during a build prints what was kept and returns 130."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(_build_from_arguments(args))
    except BuildInterrupted as stop:
        print(f"{parser.prog}: interrupted: {stop}", file=sys.stderr)
        return cli.INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, prog="c3ae cache"))
