"""Video: read frames from a file or a camera, predict ages on them, write the annotated video.

`predict_video` reads frames with OpenCV (`open_capture`), predicts on every `stride`-th,
and streams an annotated copy (`mp4v`) as it goes; the per-face CSV table is written by
`outputs.write_csv`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm.auto import tqdm

from c3ae_utils import paths
from c3ae_utils.inference.drawing import draw_predictions
from c3ae_utils.inference.outputs import frame_rows, write_csv
from c3ae_utils.inference.predictions import FacePrediction

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # when the container does not say


class ImagePredictor(Protocol):
    """Anything that predicts the faces of one RGB uint8 image, e.g. an `AgeEstimator`."""

    def predict_image(self, image: np.ndarray) -> list[FacePrediction]: ...


def predict_video(
    estimator: ImagePredictor,
    source: str | Path | int,
    output_video: str | Path | None,
    output_csv: str | Path | None,
    stride: int = 1,
    max_frames: int | None = None,
) -> list[dict[str, Any]]:
    """Predict ages on every `stride`-th frame of a video file (or camera index `source`).

    Writes, when given, an annotated copy of the video (every frame, each showing the latest
    prediction; OpenCV `mp4v`) and a CSV with one row per face of each predicted frame
    (`CSV_COLUMNS`: frame index, time in seconds, face index, box x1..y2 in pixels, detector
    confidence, age in years). Reads at most `max_frames` frames. Returns the CSV rows.
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}.")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1 (or None for every frame), got {max_frames}.")
    capture = open_capture(source)
    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    writer = None
    rows: list[dict[str, Any]] = []
    predictions: list[FacePrediction] = []
    index = 0
    try:
        description = f"video {Path(str(source)).name}"
        with tqdm(total=total, desc=description, unit="frame", mininterval=2.0) as progress:
            while max_frames is None or index < max_frames:
                ok, frame_bgr = capture.read()
                if not ok:
                    break
                frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
                if index % stride == 0:
                    predictions = estimator.predict_image(frame)
                    rows.extend(frame_rows(index, index / fps, predictions))
                if output_video is not None:
                    writer = writer or open_writer(output_video, fps, frame.shape)
                    annotated = draw_predictions(frame, predictions)
                    writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
                index += 1
                progress.update(1)
    except KeyboardInterrupt:  # Ctrl-C ends a camera session; keep what was recorded
        logger.info("Stopped after %d frames.", index)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if index == 0:
        raise ValueError(f"No frame could be read from {source}; is it a video OpenCV can decode?")
    if output_csv is not None:
        write_csv(rows, output_csv)
    logger.info("%s: %d frames read, %d faces predicted", source, index, len(rows))
    return rows


def open_capture(source: str | Path | int) -> Any:
    """An opened `cv2.VideoCapture` for a video file or a camera index, or a clear error."""
    if isinstance(source, int):
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise RuntimeError(
                f"No camera found at index {source}: check that a webcam is connected and "
                "that this process may use it (containers, CI and Colab have none); "
                "predict on a video file instead."
            )
        return capture
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"Video not found: {path}.")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"OpenCV cannot open {path} as a video.")
    return capture


def open_writer(path: str | Path, fps: float, shape: tuple[int, ...]) -> Any:
    """An opened `cv2.VideoWriter` (`mp4v`) at `fps` frames/s for frames of `shape`
    (height, width, 3); makes the parent folder; RuntimeError when OpenCV cannot write."""
    path = Path(path)
    paths.ensure_dir(path.parent)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (shape[1], shape[0]))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4v video to {path}.")
    return writer
