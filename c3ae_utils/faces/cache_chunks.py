"""One chunk of a face cache: its job, its rows, and the worker that processes and writes it.

A chunk is `cache_files.CHUNK_SIZE` consecutive rows of the input table. `process_chunk(job)`
runs on a worker (a Dask worker process, or this process): it processes the chunk's images
(`processing.process_images`) with the worker thread's own detector, turns the results into
one table row per kept face or failed image (`RESULT_COLUMNS`) and the crops of the kept faces,
and writes both as the chunk's files, then their record. `run_jobs` runs a list of chunk jobs
here or on a cluster.

Workers that are processes of their own run TensorFlow and OpenCV on one thread each; this
process (`workers=1`) keeps TensorFlow's thread pools as they are (they are process-wide, and
may be in use already). Where TensorFlow's CPU kernels (oneDNN) sum in an order that depends on
the thread count (AVX-512 CPUs), the two give boxes and angles that differ in their last bits
for a few faces (tests/test_face_cache.py: one face of 31, by 6e-5 px and 4e-6 degrees, with
the same crops).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from distributed import Client

from c3ae_utils.faces.cache_files import write_chunk
from c3ae_utils.faces.cluster import WorkerFailed, run_on_cluster
from c3ae_utils.faces.detection import Detector
from c3ae_utils.faces.processing import ProcessedFace, ProcessResult, Settings, process_images
from c3ae_utils.shapes import CHANNELS, CROP_SIZE, NUM_SCALES

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


def result_rows(
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


@dataclass(frozen=True)
class ChunkJob:
    """One chunk for a worker: its index, first row, image paths and metadata rows, how the
    worker builds its detector (`one_thread`: cap OpenCV and TensorFlow to one thread, for
    workers that are processes of their own), and the SHA-256 of the cache's `config.json`
    (recorded with the chunk's files)."""

    index: int
    start: int
    image_paths: list[str]
    metadata: pd.DataFrame
    settings: Settings
    folder: str
    detector_options: dict
    worker_initializer: Callable[[], None] | None = None
    one_thread: bool = True
    config_sha256: str = ""


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


def _chunk_detector(job: ChunkJob) -> Detector:
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


def process_chunk(job: ChunkJob) -> tuple[int, int, int]:
    """Process one chunk on a worker and write its files; returns (chunk, images, faces)."""
    rows = list(range(job.start, job.start + len(job.image_paths)))
    results = process_images(job.image_paths, detector=_chunk_detector(job), settings=job.settings)
    frame, crops = result_rows(results, rows, job.settings.crop_size)
    metadata = job.metadata.reset_index(drop=True)
    frame = metadata.iloc[frame["row"].to_numpy() - job.start].reset_index(drop=True).join(frame)
    write_chunk(Path(job.folder), job.index, crops, frame, job.config_sha256)
    return job.index, len(rows), len(crops)


def run_jobs(jobs: list[ChunkJob], client: Client | None, on_result: Callable[[int, int], None]) -> None:
    """Run chunk jobs on the cluster of `client`, or one after another in this process when
    it is None; `on_result(chunk, images)` here after each finished chunk. An OSError on a
    worker (a full disk) is raised here as it is: an expected error, not a worker's bug."""
    if client is None:
        for job in jobs:
            index, images, _ = process_chunk(dataclasses.replace(job, one_thread=False))
            on_result(index, images)
        return
    try:
        run_on_cluster(client, process_chunk, jobs, lambda done: on_result(done[0], done[1]), name="c3ae-chunk")
    except WorkerFailed as failed:
        if isinstance(failed.__cause__, OSError):
            raise failed.__cause__ from None
        raise
