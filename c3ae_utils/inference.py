"""Predict ages on photos and videos, draw them, and export the model to TFLite and ONNX.

Command line (the `c3ae` console script dispatches `predict` here)::

    c3ae predict photo.jpg clip.mp4 --weights utkface-focal-full --output predictions/ --json
    c3ae predict clip.mp4 --stride 5            # every 5th frame of the video
    c3ae predict --camera 0 --max-frames 300    # a webcam, where one exists
    c3ae predict photos/                        # every photo and video directly in a folder
    python -m c3ae_utils.inference photo.jpg    # the same without the console script

Every face goes through the same preprocessing as training (`faces.process_image` with the
inference policy: detect, align, detect again, the three context crops), and all faces of one
photo or video frame are predicted in one batched model call.

The command line follows the package's error contract (`cli.run`): the weights are loaded and
checked (`network.load_model`) before any image is read and before the output folder is
made, so bad weights, a bad `--output` or a bad option end it with one line on stderr and
exit code 1 (2 for usage errors), leaving nothing behind. A folder given as input stands for
the photos and videos directly inside it (`IMAGE_SUFFIXES`, `VIDEO_SUFFIXES`; sorted by
name, not recursive); other inputs that cannot be used are reported and skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
from tqdm.auto import tqdm

from c3ae_utils import cli, faces, network, paths
from c3ae_utils.shapes import CROPS_SHAPE

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
CSV_COLUMNS = ["frame", "time_s", "face", "x1", "y1", "x2", "y2", "confidence", "age"]
QUANTIZATIONS = ("float32", "float16", "int8")
EXPORT_FORMATS = ("tflite_float32", "tflite_float16", "tflite_int8", "onnx")


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FacePrediction:
    """One face of a photo and its predicted age.

    `box` float32 [4] = x1, y1, x2, y2 in pixels of the input image; `landmarks` float32 [5, 2]
    (x, y): left eye, right eye, nose, mouth left, mouth right; `confidence` of the detector;
    `age` in years (the model's `age` output); `distribution` float32 [12], the softmax over
    the age bins 0, 10, ..., 110.
    """

    box: np.ndarray
    landmarks: np.ndarray
    confidence: float
    age: float
    distribution: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats, rounded)."""
        return {
            "box": [round(float(value), 1) for value in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "confidence": round(float(self.confidence), 4),
            "age": round(float(self.age), 2),
            "distribution": [round(float(value), 4) for value in self.distribution],
        }


class AgeEstimator:
    """Detect every face of a photo and predict its age with a C3AE model.

    `model` is a Keras C3AE model (input `crops` [n, 3, 64, 64, 3] RGB 0-255, outputs `age`
    and `distribution`; checked by `network.check_signature`, ValueError otherwise) or an
    exported runner (`TFLiteRunner`, `OnnxRunner`); `detector` is a `faces.Detector`
    (default: the process-wide `faces.default_detector()`).
    """

    def __init__(self, model: Any, detector: Any = None, name: str = "model") -> None:
        self.model = network.load_model(model) if isinstance(model, keras.Model) else model
        self.detector = detector
        self.name = name

    @classmethod
    def from_weights(cls, spec: str | Path | None = None, detector: Any = None) -> AgeEstimator:
        """An estimator from anything `network.resolve_weights` accepts: a run name or
        folder, a `.keras` file, a reference `.h5` file, "c3ae-utkface" (the shipped model) or
        "reference-v89"/"reference-v84"; `spec=None` uses `network.DEFAULT_WEIGHTS`, the shipped
        model."""
        path = network.resolve_weights(spec)
        return cls(network.load_model(path), detector=detector, name=network.weights_label(path))

    def _get_detector(self) -> Any:
        if self.detector is None:
            self.detector = faces.default_detector()
        return self.detector

    def predict_crops(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Ages float32 [n] (years) and distributions float32 [n, 12] of crops [n, 3, 64, 64, 3]."""
        return network.predict_ages(self.model, crops)

    def predict_image(self, image: np.ndarray) -> list[FacePrediction]:
        """Every face of an RGB uint8 [height, width, 3] image, with its age, in one model call."""
        return self.predict_images([image])[0]

    def predict_images(self, images: Sequence[np.ndarray]) -> list[list[FacePrediction]]:
        """Every face of several RGB uint8 images: detection batched, one model call for all."""
        images = [_check_image(image) for image in images]
        detected, crops = preprocess_images(images, self._get_detector())
        return self.predict_preprocessed(detected, crops, len(images))

    def predict_preprocessed(
        self, detected: Sequence[tuple[int, Any]], crops: np.ndarray, num_images: int
    ) -> list[list[FacePrediction]]:
        """Predictions from `preprocess_images`' output (so several models can share one
        detection pass): one list per image, in one model call."""
        outputs = self.predict_crops(crops)
        predictions: list[list[FacePrediction]] = [[] for _ in range(num_images)]
        for row, (index, face) in enumerate(detected):
            predictions[index].append(
                FacePrediction(
                    box=np.asarray(face.box, np.float32),
                    landmarks=np.asarray(face.landmarks, np.float32),
                    confidence=float(face.confidence),
                    age=float(outputs["age"][row]),
                    distribution=outputs["distribution"][row],
                )
            )
        return predictions

    def annotate(self, image: np.ndarray, predictions: Sequence[FacePrediction]) -> np.ndarray:
        """A copy of the RGB uint8 image with each face's box and predicted age drawn on it."""
        return draw_predictions(image, predictions)

    def predict_video(
        self,
        path: str | Path,
        output_video: str | Path | None,
        output_csv: str | Path | None,
        stride: int = 1,
        max_frames: int | None = None,
    ) -> list[dict[str, Any]]:
        """Predict ages on every `stride`-th frame of a video file; see `predict_video`."""
        return predict_video(self, path, output_video, output_csv, stride, max_frames)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            "Expected an RGB uint8 image [height, width, 3]; read files with "
            f"faces.read_image(path). Got {image.dtype} {image.shape}."
        )
    return image


def preprocess_images(
    images: Sequence[np.ndarray], detector: Any = None
) -> tuple[list[tuple[int, Any]], np.ndarray]:
    """Faces and their crops, exactly as training prepares them (`faces.process_images`).

    The inference policy keeps every face: detect, align, detect again on the aligned chip,
    cut the three context crops. Returns (image index, `faces.Face`) pairs, boxes and
    landmarks in that image's pixels, and crops uint8 [n, 3, 64, 64, 3] (RGB; outer,
    middle, inner), one row per pair.
    """
    results = faces.process_images(list(images), policy="inference", detector=detector)
    detected = [(index, item.face) for index, result in enumerate(results) for item in result.faces]
    crops = [item.crops for result in results for item in result.faces]
    if not crops:
        return [], np.zeros((0, *CROPS_SHAPE), np.uint8)
    return detected, np.stack(crops).astype(np.uint8, copy=False)


def draw_predictions(image: np.ndarray, predictions: Sequence[FacePrediction]) -> np.ndarray:
    """Boxes and ages drawn on a copy of an RGB uint8 image [height, width, 3]."""

    canvas = np.ascontiguousarray(_check_image(image)).copy()
    scale = max(canvas.shape[:2]) / 1000.0
    thickness = max(1, round(2 * scale))
    font_scale = max(0.5, 0.9 * scale)
    colour = (40, 220, 40)  # RGB green
    for prediction in predictions:
        x1, y1, x2, y2 = (int(round(float(value))) for value in prediction.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        label = f"{prediction.age:.0f}"
        (width, height), baseline = cv2.getTextSize(
            label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness
        )
        top = max(0, y1 - height - baseline - 2 * thickness)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 2 * thickness, y1), colour, -1)
        cv2.putText(
            canvas,
            label,
            (x1 + thickness, y1 - baseline - thickness),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return canvas


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------


def predict_video(
    estimator: AgeEstimator,
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
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
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
                    rows.extend(_frame_rows(index, index / fps, predictions))
                if output_video is not None:
                    writer = writer or _open_writer(output_video, fps, frame.shape)
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


def _open_writer(path: str | Path, fps: float, shape: tuple[int, ...]) -> Any:

    path = Path(path)
    paths.ensure_dir(path.parent)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (shape[1], shape[0]))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4v video to {path}.")
    return writer


def _frame_rows(
    frame: int, seconds: float, predictions: Sequence[FacePrediction]
) -> list[dict[str, Any]]:
    return [
        {
            "frame": frame,
            "time_s": round(seconds, 3),
            "face": face,
            **{
                name: round(float(v), 1)
                for name, v in zip(("x1", "y1", "x2", "y2"), p.box, strict=True)
            },
            "confidence": round(p.confidence, 4),
            "age": round(p.age, 2),
        }
        for face, p in enumerate(predictions)
    ]


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the per-frame rows of `predict_video` as CSV (header `CSV_COLUMNS`)."""
    path = Path(path)
    paths.ensure_dir(path.parent)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------------
# Export: TFLite and ONNX
# --------------------------------------------------------------------------------------------


def export_saved_model(model: Any, folder: str | Path) -> Path:
    """Write `model` as a TensorFlow SavedModel (input `crops` [None, 3, 64, 64, 3])."""
    folder = Path(folder)
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.WARNING)  # silence "Assets written to ..." lines
    try:
        model.export(str(folder), format="tf_saved_model", verbose=False)
    finally:
        tf_logger.setLevel(level)
    return folder


def _tflite_from_saved_model(saved_model: Path, quantization: str) -> bytes:
    import tensorflow as tf  # export needs TensorFlow; prediction also runs on Keras' JAX backend

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        # Dynamic-range quantization: int8 weights, float activations; no calibration data.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization != "float32":
        raise ValueError(f"quantization must be float32, float16 or int8, got {quantization!r}.")
    return converter.convert()


def export_tflite(model: Any, path: str | Path, quantization: str = "float32") -> Path:
    """Convert a Keras C3AE model to TFLite (`float32`, `float16` or dynamic-range `int8`).

    Goes through a SavedModel: in TF 2.21 / Keras 3 a concrete function handed straight to the
    converter loses its variables (the model converts but outputs NaN).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}.")
    path = Path(path)
    paths.ensure_dir(path.parent)
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = export_saved_model(model, Path(scratch) / "saved_model")
        path.write_bytes(_tflite_from_saved_model(saved_model, quantization))
    return path


def export_onnx(model: Any, path: str | Path, opset: int = 17) -> Path:
    """Convert a Keras C3AE model to ONNX with tf2onnx (input `crops`, outputs `age`, `distribution`)."""
    import tensorflow as tf  # export needs TensorFlow; prediction also runs on Keras' JAX backend
    import tf2onnx  # optional: the `export` extra

    path = Path(path)
    paths.ensure_dir(path.parent)
    signature = (tf.TensorSpec((None, *CROPS_SHAPE), tf.float32, name="crops"),)
    function = tf.function(lambda crops: model(crops, training=False))
    tf2onnx.convert.from_function(
        function, input_signature=signature, opset=opset, output_path=str(path)
    )
    return path


def export_all(model: Any, folder: str | Path | None = None, stem: str = "c3ae") -> dict[str, Path]:
    """Export to every format of `EXPORT_FORMATS`; returns {format: file path}.

    Files go to `folder` (default `artifacts/export/`) as `<stem>_float32.tflite`,
    `<stem>_float16.tflite`, `<stem>_int8.tflite` and `<stem>.onnx`.
    """
    folder = paths.ensure_dir(Path(folder) if folder else paths.artifacts_dir() / "export")
    exported: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = export_saved_model(model, Path(scratch) / "saved_model")
        for quantization in QUANTIZATIONS:
            target = folder / f"{stem}_{quantization}.tflite"
            target.write_bytes(_tflite_from_saved_model(saved_model, quantization))
            exported[f"tflite_{quantization}"] = target
    exported["onnx"] = export_onnx(model, folder / f"{stem}.onnx")
    for name, file in exported.items():
        logger.info("exported %s: %s (%.1f kB)", name, file, file.stat().st_size / 1e3)
    return exported


class TFLiteRunner:
    """Run an exported `.tflite` C3AE model: `runner(crops) -> {"age", "distribution"}`."""

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"TFLite model not found: {self.path}.")
        self.interpreter = _tflite_interpreter(self.path, num_threads)
        self.runner = self.interpreter.get_signature_runner()

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for crops float32 [n, 3, 64, 64, 3]: `age` [n, 1], `distribution` [n, 12]."""
        return self.runner(crops=np.asarray(crops, np.float32))


def _tflite_interpreter(path: Path, num_threads: int | None) -> Any:
    try:  # LiteRT is TFLite's new home; tf.lite.Interpreter still works in TF 2.21
        from ai_edge_litert.interpreter import Interpreter  # optional: TFLite without TensorFlow
    except ImportError:
        import tensorflow as tf  # export needs TensorFlow; prediction also runs on Keras' JAX backend

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Interpreter(model_path=str(path), num_threads=num_threads)


class OnnxRunner:
    """Run an exported `.onnx` C3AE model with ONNX Runtime on the CPU."""

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        import onnxruntime  # optional: the `export` extra

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}.")
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for crops float32 [n, 3, 64, 64, 3]: `age` [n, 1], `distribution` [n, 12]."""
        values = self.session.run(None, {self.input_name: np.asarray(crops, np.float32)})
        return dict(zip(self.output_names, values, strict=True))


def load_runner(path: str | Path, num_threads: int | None = None) -> TFLiteRunner | OnnxRunner:
    """A runner for an exported `.tflite` or `.onnx` file."""
    path = Path(path)
    if path.suffix == ".tflite":
        return TFLiteRunner(path, num_threads)
    if path.suffix == ".onnx":
        return OnnxRunner(path, num_threads)
    raise ValueError(f"Expected a .tflite or .onnx file, got {path}.")


def compare_exports(
    model: Any, exported: dict[str, Path], crops: np.ndarray, batch_size: int = 64
) -> dict[str, dict[str, float]]:
    """How far each exported model is from Keras on the same crops uint8 [n, 3, 64, 64, 3].

    Returns {format: {"max_age_diff", "mean_age_diff" (years), "max_distribution_diff"}}.
    """
    reference = network.predict_ages(model, crops, batch_size)
    report = {}
    for name, path in exported.items():
        outputs = network.predict_ages(load_runner(path), crops, batch_size)
        age_diff = np.abs(outputs["age"] - reference["age"])
        report[name] = {
            "max_age_diff": float(age_diff.max()),
            "mean_age_diff": float(age_diff.mean()),
            "max_distribution_diff": float(
                np.abs(outputs["distribution"] - reference["distribution"]).max()
            ),
        }
    return report


def measure_latency(
    predict: Callable[[np.ndarray], Any],
    batch: np.ndarray,
    repeats: int = 50,
    warmup: int = 3,
    max_seconds: float = 2.0,
) -> float:
    """Median seconds per call of `predict(batch)`.

    After `warmup` calls, times `repeats` calls, or fewer (at least 3) when they would take
    longer than about `max_seconds`.
    """
    started = time.perf_counter()
    for _ in range(warmup):
        predict(batch)
    per_call = (time.perf_counter() - started) / max(warmup, 1)
    calls = int(np.clip(max_seconds / max(per_call, 1e-9), 3, repeats))
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        predict(batch)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings))


def keras_predictor(model: Any) -> Callable[[np.ndarray], dict[str, Any]]:
    """A compiled `tf.function` calling the Keras model in inference mode (for timing)."""
    import tensorflow as tf  # export needs TensorFlow; prediction also runs on Keras' JAX backend

    signature = [tf.TensorSpec((None, *CROPS_SHAPE), tf.float32)]
    return tf.function(lambda crops: model(crops, training=False), input_signature=signature)


def benchmark(
    model: Any,
    exported: dict[str, Path],
    batch_sizes: Sequence[int] = (1, 256),
    num_threads: int | None = None,
    repeats: int = 50,
    seed: int = 0,
    max_seconds: float = 1.0,
) -> list[dict[str, Any]]:
    """Latency and throughput of Keras and each exported file on random crops.

    Each (backend, batch size) is timed over `repeats` calls, or fewer when they would take
    longer than about `max_seconds` (see `measure_latency`).

    Returns one row per (backend, batch size): `ms_per_batch`, `ms_per_face`,
    `faces_per_s`, `size_mb` (file size; the `.keras` size is not known here, so None).
    Weights do not change the speed, so any C3AE model will do.
    """
    rng = np.random.default_rng(seed)
    backends: dict[str, tuple[Callable[[np.ndarray], Any], float | None]] = {
        "keras predict_on_batch": (model.predict_on_batch, None),
        "keras tf.function": (keras_predictor(model), None),
    }
    for name, path in exported.items():
        backends[name] = (load_runner(path, num_threads), path.stat().st_size / 1e6)
    rows = []
    for batch_size in batch_sizes:
        batch = rng.uniform(0, 255, (batch_size, *CROPS_SHAPE)).astype(np.float32)
        for name, (predict, size_mb) in backends.items():
            seconds = measure_latency(predict, batch, repeats=repeats, max_seconds=max_seconds)
            rows.append(
                {
                    "backend": name,
                    "batch_size": batch_size,
                    "ms_per_batch": round(1e3 * seconds, 3),
                    "ms_per_face": round(1e3 * seconds / batch_size, 4),
                    "faces_per_s": round(batch_size / seconds, 1),
                    "size_mb": None if size_mb is None else round(size_mb, 3),
                }
            )
    return rows


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The `c3ae predict` argument parser."""
    parser = cli.ArgumentParser(
        prog="c3ae predict",
        description="Predict ages of every face in photos and videos with a C3AE model.",
    )
    parser.add_argument("inputs", nargs="*", type=Path, help="photos and/or video files")
    parser.add_argument(
        "--weights",
        default=None,
        help="c3ae-utkface (the course's shipped model, models/), reference-v89 / reference-v84 "
        "(the reference implementation's), a run name or folder (artifacts/runs/), a .keras or "
        "reference .h5 file; default: c3ae-utkface",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for annotated files (default: artifacts/predictions)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print every prediction as JSON on stdout"
    )
    parser.add_argument("--stride", type=int, default=1, help="predict every N-th video frame")
    parser.add_argument(
        "--max-frames", type=int, default=None, help="read at most N frames per video"
    )
    parser.add_argument("--camera", type=int, default=None, help="predict on camera INDEX (e.g. 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`c3ae predict ...` under the package's error contract (`cli.run`): 0 when at least one
    face was predicted; 1 when nothing could be done, or on bad weights or a bad `--output`
    (one line on stderr, nothing written); 2 on usage errors; 130 on Ctrl-C."""
    return cli.run(_predict_command, argv, prog="c3ae predict")


def _predict_command(argv: Sequence[str] | None = None) -> int:
    """`main` without the error contract: raises ValueError/OSError for bad input."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.inputs and args.camera is None:
        parser.error("give at least one photo or video, or --camera INDEX")
    if args.stride < 1:
        parser.error("--stride must be at least 1")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be at least 1")
    output = _output_folder(args.output)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.weights is None:
        _say(
            f"No --weights given: using the course's model {network.DEFAULT_WEIGHTS} (models/README.md; trained on "
            "UTKFace, non-commercial research only); --weights reference-v89 for the reference's."
        )
    estimator = AgeEstimator.from_weights(args.weights)  # checked before any image is read
    paths.ensure_dir(output)
    results = [_predict_input(estimator, path, output, args) for path in expand_inputs(args.inputs)]
    if args.camera is not None:
        results.append(_predict_camera(estimator, args.camera, output, args))
    summary = {"weights": estimator.name, "output": str(output), "results": results}
    paths.write_text_atomic(output / "predictions.json", json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    done = sum(1 for result in results if result.get("num_faces", 0) > 0)
    _say(f"{done} of {len(results)} inputs with faces; results in {output}")
    return 0 if done else 1


def _output_folder(output: Path | None) -> Path:
    """The `--output` folder (default `artifacts/predictions`); ValueError when it names a file."""
    output = output or paths.artifacts_dir() / "predictions"
    blocked = next((p for p in (output, *output.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ValueError(
            f"--output {output}: {blocked} is a file, not a folder; give a folder for the "
            "annotated files and predictions.json."
        )
    return output


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """The inputs with each folder replaced by the photos and videos directly inside it
    (`IMAGE_SUFFIXES`, `VIDEO_SUFFIXES`, any case; hidden files skipped; sorted by name). A
    folder without any stays in the list, so it is reported."""
    expanded: list[Path] = []
    for path in inputs:
        found = sorted(_media_files(path)) if path.is_dir() else []
        expanded.extend(found or [path])
    return expanded


def _media_files(folder: Path) -> list[Path]:
    """Photos and videos directly inside `folder` (by suffix)."""
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    return [
        path for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in suffixes
    ]


def _say(message: str) -> None:
    # Messages for the person at the terminal go to stderr, so `--json` stdout stays pure JSON.
    print(message, file=sys.stderr, flush=True)


def _predict_input(
    estimator: AgeEstimator, path: Path, output: Path, args: argparse.Namespace
) -> dict[str, Any]:
    if path.is_dir():
        _say(f"{path}: a folder without photos or videos, skipped.")
        return {"input": str(path), "error": "no photos or videos in folder"}
    if not path.is_file():
        _say(f"{path}: file not found, skipped.")
        return {"input": str(path), "error": "file not found"}
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _predict_video_file(estimator, path, output, args)
    return _predict_photo(estimator, path, output)


def _predict_photo(estimator: AgeEstimator, path: Path, output: Path) -> dict[str, Any]:

    try:
        image = faces.read_image(path)
    except (ValueError, OSError) as error:
        _say(f"{path}: not a readable image ({error}), skipped.")
        return {"input": str(path), "error": "not an image"}
    predictions = estimator.predict_image(image)
    annotated_path = output / f"{path.stem}_annotated.jpg"
    annotated = estimator.annotate(image, predictions)
    cv2.imwrite(str(annotated_path), cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
    if predictions:
        ages = ", ".join(f"{p.age:.1f}" for p in predictions)
        _say(f"{path}: {len(predictions)} face(s), ages {ages} -> {annotated_path}")
    else:
        _say(f"{path}: no face found.")
    return {
        "input": str(path),
        "kind": "photo",
        "num_faces": len(predictions),
        "annotated": str(annotated_path),
        "faces": [p.to_dict() for p in predictions],
        **({} if predictions else {"error": "no face found"}),
    }


def _predict_video_file(
    estimator: AgeEstimator, path: Path, output: Path, args: argparse.Namespace
) -> dict[str, Any]:
    video_path = output / f"{path.stem}_annotated.mp4"
    csv_path = output / f"{path.stem}_faces.csv"
    try:
        rows = estimator.predict_video(path, video_path, csv_path, args.stride, args.max_frames)
    except ValueError as error:
        _say(f"{path}: {error} Skipped.")
        return {"input": str(path), "error": "not a video"}
    frames = len({row["frame"] for row in rows})
    _say(f"{path}: {len(rows)} faces in {frames} frames -> {video_path}, {csv_path}")
    return {
        "input": str(path),
        "kind": "video",
        "num_faces": len(rows),
        "frames_with_faces": frames,
        "annotated": str(video_path),
        "csv": str(csv_path),
    }


def _predict_camera(
    estimator: AgeEstimator, camera: int, output: Path, args: argparse.Namespace
) -> dict[str, Any]:
    name = f"camera{camera}"
    try:
        rows = predict_video(
            estimator,
            camera,
            output / f"{name}_annotated.mp4",
            output / f"{name}_faces.csv",
            args.stride,
            args.max_frames,
        )
    except RuntimeError as error:
        _say(f"error: {error}")
        return {"input": name, "error": "no camera"}
    except KeyboardInterrupt:
        _say("Stopped.")
        rows = []
    return {"input": name, "kind": "camera", "num_faces": len(rows)}


if __name__ == "__main__":
    sys.exit(main())  # `main` applies the error contract itself (cli.run)
