"""Predict ages on photos and videos, draw them, and export the model to TFLite and ONNX.

    estimator = inference.AgeEstimator.from_weights("c3ae-utkface")
    found = estimator.predict_image(faces.read_image("photo.jpg"))   # list[FacePrediction]
    rows = estimator.predict_video("clip.mp4", "clip_annotated.mp4", "clip_faces.csv", stride=5)
    exported = inference.export_all(model)        # {format: path} in artifacts/export/
    runner = inference.load_runner(exported["onnx"])   # usable wherever the Keras model is

Command line (the `c3ae` console script dispatches `predict` here)::

    c3ae predict photo.jpg clip.mp4 --weights utkface-focal-full --output predictions/ --json
    c3ae predict clip.mp4 --stride 5            # every 5th frame of the video
    c3ae predict --camera 0 --max-frames 300    # a webcam, where one exists
    c3ae predict photos/                        # every photo and video directly in a folder
    python -m c3ae_utils.inference photo.jpg    # the same without the console script

Every face goes through the same preprocessing as training (`faces.process_image` with the
inference policy: detect, align, detect again, the three context crops), and all faces of one
photo or video frame are predicted in one batched model call.

The modules, each importing only those before it:

| module        | what for                                                                  |
| ------------- | ------------------------------------------------------------------------- |
| `predictions` | `FacePrediction`, `preprocess_images`: faces and crops of photos          |
| `drawing`     | `draw_predictions`: boxes and ages on a copy of an image                  |
| `outputs`     | `write_csv` (`CSV_COLUMNS`), annotated photos, `predictions.json`, `output_names` (never colliding) |
| `tracking`    | `FaceTracker`, `TrackedPrediction`, `LitePredictor`: faces followed through frames, track IDs, smoothed ages |
| `video`       | `predict_video`, `open_capture`: read frames, write the annotated video (tracked by default) |
| `estimator`   | `AgeEstimator`: detector + model, photos batched into one model call      |
| `runners`     | `TFLiteRunner`, `OnnxRunner`, `load_runner`: run exported models          |
| `export`      | `export_tflite`, `export_onnx`, `export_all`, `export_saved_model`        |
| `benchmark`   | `compare_exports`, `benchmark`, `measure_latency`: exports against Keras  |
| `inputs`      | `scan_inputs`, `expand_inputs`, `media_kind`: which files to read (by decoding) |
| `command`     | `build_parser`, `main`: the `c3ae predict` command line                   |

This package re-exports their public names, so `inference.NAME` is all a caller needs.
TensorFlow, tf2onnx and ONNX Runtime load only when exporting or running an exported model.
"""

from __future__ import annotations

from c3ae_utils.inference.benchmark import (
    benchmark,
    compare_exports,
    keras_predictor,
    measure_latency,
)
from c3ae_utils.inference.command import build_parser, main
from c3ae_utils.inference.drawing import draw_predictions
from c3ae_utils.inference.estimator import AgeEstimator
from c3ae_utils.inference.export import (
    EXPORT_FORMATS,
    QUANTIZATIONS,
    export_all,
    export_onnx,
    export_saved_model,
    export_tflite,
)
from c3ae_utils.inference.inputs import IMAGE_SUFFIXES, VIDEO_SUFFIXES, expand_inputs, scan_inputs
from c3ae_utils.inference.outputs import CSV_COLUMNS, output_names, write_csv
from c3ae_utils.inference.predictions import FacePrediction, preprocess_images
from c3ae_utils.inference.runners import OnnxRunner, TFLiteRunner, load_runner
from c3ae_utils.inference.tracking import FaceTracker, LitePredictor, TrackedPrediction
from c3ae_utils.inference.video import TRACK_COLUMNS, open_capture, predict_video

__all__ = [
    # predictions, drawing, estimator
    "FacePrediction", "preprocess_images", "draw_predictions", "AgeEstimator",
    # video and output files
    "predict_video", "open_capture", "write_csv", "CSV_COLUMNS", "TRACK_COLUMNS",
    "FaceTracker", "LitePredictor", "TrackedPrediction",
    # export, exported models, benchmark
    "QUANTIZATIONS", "EXPORT_FORMATS", "export_saved_model", "export_tflite", "export_onnx",
    "export_all", "TFLiteRunner", "OnnxRunner", "load_runner",
    "compare_exports", "measure_latency", "keras_predictor", "benchmark",
    # command line
    "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "expand_inputs", "scan_inputs", "output_names", "build_parser", "main",
]
