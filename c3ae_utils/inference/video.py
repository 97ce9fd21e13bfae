"""Video: read frames from a file or a camera, predict ages on them, write the annotated video.

`predict_video` reads frames with OpenCV (`open_capture`), predicts on every `stride`-th,
and streams an annotated copy (`mp4v`) as it goes, written whole or not at all and checked
(`AtomicVideoWriter`); the per-face CSV table is written by `outputs.write_csv`. A video
file that ends before the frame count its container promises says so (`early_end`).

With a `tracker` (`tracking.FaceTracker`, what `AgeEstimator.predict_video` uses by default)
faces are followed from frame to frame instead of detected on each: every face gets a track
ID, drawn beside its age, and its age is smoothed over the track; the CSV rows gain `track`,
`age_raw` and `age_smoothed` (`age` is the smoothed age shown). A `live` source (a camera)
is timed by the clock, and the frame rate is drawn on its annotated frames.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm.auto import tqdm

from c3ae_utils import paths
from c3ae_utils.inference.drawing import draw_predictions
from c3ae_utils.inference.outputs import frame_rows, write_csv
from c3ae_utils.inference.predictions import FacePrediction
from c3ae_utils.inference.tracking import TrackedPrediction

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0  # when the container does not say
FRAME_COUNT_SLACK = 1  # frames a container's count may be off by (some estimate it from the duration)
LOW_SPACE_BYTES = 1 << 20  # a video writer that failed with less free space than this ran out of it
TRACK_COLUMNS = ["track", "age_raw", "age_smoothed"]  # what tracked rows add to `CSV_COLUMNS`


class ImagePredictor(Protocol):
    """Anything that predicts the faces of one RGB uint8 image, e.g. an `AgeEstimator`."""

    def predict_image(self, image: np.ndarray) -> list[FacePrediction]: ...


class FrameTracker(Protocol):
    """Anything that follows the faces of consecutive frames, e.g. a `tracking.FaceTracker`:
    the faces of an RGB uint8 frame shown at `time_s` seconds, each with its `track`."""

    def update(self, frame: np.ndarray, time_s: float) -> Sequence[FacePrediction]: ...

    def warm_up(self, shape: tuple[int, ...]) -> None: ...


def predict_video(
    estimator: ImagePredictor,
    source: str | Path | int,
    output_video: str | Path | None,
    output_csv: str | Path | None,
    stride: int = 1,
    max_frames: int | None = None,
    tracker: FrameTracker | None = None,
    live: bool = False,
) -> list[dict[str, Any]]:
    """Predict ages on every `stride`-th frame of a video file (or camera `source`, see
    `open_capture`).

    Writes, when given, an annotated copy of the video (every frame, each showing the latest
    prediction; OpenCV `mp4v`) and a CSV with one row per face of each predicted frame
    (`CSV_COLUMNS`: frame index, time in seconds, face index, box x1..y2 in pixels, detector
    confidence, age in years; with a `tracker`, also track ID, raw and smoothed age). Each
    frame is predicted by `estimator.predict_image`, or followed by `tracker.update` when
    given. `live`: times from the clock and the frame rate drawn on the frames (a camera; a
    file read live is played at its frame rate, as a camera would give it); otherwise a
    frame's time is its index over the container's frame rate. Reads at most `max_frames`
    frames. Returns the CSV rows.
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
    predictions: Sequence[FacePrediction] = []
    clock = FrameClock(fps, live, paced=live and not _streams_itself(source))
    shape = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), 3)
    if tracker is not None and min(shape) > 0:
        tracker.warm_up(shape)  # before the first frame: the clock starts there
    index = 0
    try:
        description = f"video {Path(str(source)).name}"
        with tqdm(total=total, desc=description, unit="frame", mininterval=2.0) as progress:
            while max_frames is None or index < max_frames:
                ok, frame_bgr = capture.read()
                if not ok:
                    break
                frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
                seconds = clock.tick(index)
                if index % stride == 0:
                    predictions = _predict_frame(estimator, tracker, frame, seconds)
                    rows.extend(video_rows(index, seconds, predictions))
                if output_video is not None:
                    writer = writer or open_writer(output_video, fps, frame.shape)
                    annotated = annotate_frame(frame, predictions, clock.rate if live else None)
                    writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
                index += 1
                progress.update(1)
    except KeyboardInterrupt:  # Ctrl-C ends a camera session; keep what was recorded
        logger.info("Stopped after %d frames.", index)
        max_frames = index  # stopped by the user: not a video that "ended early" below
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if index == 0:
        raise ValueError(f"No frame could be read from {source}; is it a video OpenCV can decode?")
    warning = None if live else early_end(source, index, max_frames)  # a stream promises no count
    if warning:
        logger.warning(warning)
    if output_csv is not None:
        write_csv(rows, output_csv)
    logger.info("%s: %d frames read, %d faces predicted", source, index, len(rows))
    return rows


def _predict_frame(
    estimator: ImagePredictor, tracker: FrameTracker | None, frame: np.ndarray, seconds: float
) -> Sequence[FacePrediction]:
    """The faces of one frame: followed by `tracker` when there is one, else detected anew."""
    return estimator.predict_image(frame) if tracker is None else tracker.update(frame, seconds)


def video_rows(
    frame: int, seconds: float, predictions: Sequence[FacePrediction]
) -> list[dict[str, Any]]:
    """The CSV rows of one frame (`outputs.frame_rows`); tracked faces add `TRACK_COLUMNS`:
    `track`, `age_raw` (this frame's prediction) and `age_smoothed` (the track's, also in
    `age`), years."""
    rows = frame_rows(frame, seconds, predictions)
    for row, prediction in zip(rows, predictions, strict=True):
        if isinstance(prediction, TrackedPrediction):
            values = (prediction.track, round(prediction.age_raw, 2), round(prediction.age, 2))
            row.update(zip(TRACK_COLUMNS, values, strict=True))
    return rows


def _streams_itself(source: str | Path | int) -> bool:
    """Whether `source` gives its frames in real time by itself: a camera or a stream URL."""
    return isinstance(source, int) or "://" in str(source)


class FrameClock:
    """The time of each frame read (seconds), and the rate at which they are read.

    A file's frame is at `index / fps`; a `live` source's at the clock's time since its first
    frame. `paced`: frame `index` is not handed out before `index / fps` seconds after the
    first (a file played as a camera would give it). `rate` is frames per second over the
    last `window` frames read (None before two).
    """

    def __init__(self, fps: float, live: bool = False, paced: bool = False, window: int = 30) -> None:
        self.fps, self.live, self.paced = fps, live, paced
        self.start: float | None = None
        self.ticks: deque[float] = deque(maxlen=window)

    def tick(self, index: int) -> float:
        """Record that frame `index` was read now (after waiting for it, when paced); its
        time in seconds."""
        now = time.perf_counter()
        self.start = now if self.start is None else self.start
        if self.paced and now - self.start < index / self.fps:
            time.sleep(index / self.fps - (now - self.start))
            now = time.perf_counter()
        self.ticks.append(now)
        return now - self.start if self.live else index / self.fps

    @property
    def rate(self) -> float | None:
        """Frames read per second over the last `window` frames."""
        if len(self.ticks) < 2 or self.ticks[-1] <= self.ticks[0]:
            return None
        return (len(self.ticks) - 1) / (self.ticks[-1] - self.ticks[0])


def annotate_frame(
    frame: np.ndarray, predictions: Sequence[FacePrediction], rate: float | None = None
) -> np.ndarray:
    """A copy of an RGB uint8 frame with boxes and ages (`draw_predictions`), each tracked
    face's track ID (`#3`) under its box, and, when given, `rate` (frames/s) in the top-left
    corner."""
    canvas = draw_predictions(frame, predictions)
    scale = max(0.5, 0.6 * max(canvas.shape[:2]) / 1000.0)
    for prediction in predictions:
        if isinstance(prediction, TrackedPrediction):
            x1, _, _, y2 = (int(round(float(value))) for value in prediction.box)
            _label(canvas, f"#{prediction.track}", (x1, y2 + int(22 * scale)), scale)
    if rate is not None:
        _label(canvas, f"{rate:.1f} fps", (8, int(30 * scale)), scale)
    return canvas


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """Write `text` at `origin` (its baseline's left end, pixels) in place: white on a dark outline."""
    for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def open_capture(source: str | Path | int) -> Any:
    """An opened `cv2.VideoCapture` for a video file, a camera index or a stream URL (any
    `scheme://`, e.g. rtsp or http, that OpenCV's FFmpeg reads), or a clear error."""
    if isinstance(source, str) and "://" in source:
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise RuntimeError(f"OpenCV cannot open the stream {source}: check the address.")
        return capture
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


def open_writer(path: str | Path, fps: float, shape: tuple[int, ...]) -> AtomicVideoWriter:
    """An opened `AtomicVideoWriter` (`mp4v`) at `fps` frames/s for frames of `shape`
    (height, width, 3); makes the parent folder; OSError when the video cannot be written."""
    return AtomicVideoWriter(Path(path), fps, shape)


class AtomicVideoWriter:
    """A `cv2.VideoWriter` (`mp4v`) that writes `path` whole or not at all.

    Frames go to a temporary file beside `path`; `release()` closes it, reads it back and
    renames it to `path` only when OpenCV finds every frame written. OpenCV's writer reports
    no failed write (a full disk leaves an mp4 without its index), so this check is what
    turns one into an `OSError`; the temporary file is removed either way.
    """

    def __init__(self, path: Path, fps: float, shape: tuple[int, ...]) -> None:
        self.path = path
        self.temporary = path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")
        self.frames = 0
        try:
            paths.ensure_dir(path.parent)
            self.temporary.touch()  # a read-only folder fails here, with the system's reason
        except OSError as error:
            raise OSError(f"cannot write {path}: {error.strerror or error}") from error
        size = (shape[1], shape[0])
        self.writer = cv2.VideoWriter(str(self.temporary), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self.writer.isOpened():
            self.temporary.unlink(missing_ok=True)
            raise OSError(f"cannot write {path}: OpenCV cannot open an mp4v video writer there.")

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one BGR uint8 [height, width, 3] frame."""
        self.writer.write(frame_bgr)
        self.frames += 1

    def release(self) -> None:
        """Finish the video: close it, check it reads back whole, move it to `path`."""
        self.writer.release()
        try:
            found = frame_count(self.temporary)
            if found != self.frames:
                raise OSError(self._failure(found))
            os.replace(self.temporary, self.path)
        finally:
            self.temporary.unlink(missing_ok=True)

    def _failure(self, found: int | None) -> str:
        """Why the finished temporary file is not the video written (disk full or not)."""
        free = shutil.disk_usage(self.temporary.parent).free
        if free < LOW_SPACE_BYTES:
            return f"cannot write {self.path}: no space left on device ({free} bytes free)."
        read = "no video" if found is None else f"{found} of {self.frames} frames"
        return f"cannot write {self.path}: OpenCV reads back {read} from what it wrote."


def frame_count(source: str | Path) -> int | None:
    """The number of frames a video file's container promises, None when OpenCV cannot
    open it or the container does not say."""
    capture = cv2.VideoCapture(str(source))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    return count if count > 0 else None


def early_end(source: str | Path | int, read: int, max_frames: int | None = None) -> str | None:
    """A warning when a video file gave fewer frames than its container promises (a cut
    download, a damaged file), None otherwise: a camera, `max_frames` reached, or within
    `FRAME_COUNT_SLACK` of the count (some containers only estimate it)."""
    if isinstance(source, int) or (max_frames is not None and read >= max_frames):
        return None
    promised = frame_count(source)
    if promised is None or read >= promised - FRAME_COUNT_SLACK:
        return None
    return (
        f"{source} ended after {read} of the {promised} frames its container promises (cut "
        f"short or damaged?); the outputs cover those {read} frames."
    )
