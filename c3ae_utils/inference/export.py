"""Export a Keras C3AE model to TFLite (float32, float16, dynamic-range int8) and ONNX.

TensorFlow and tf2onnx are imported inside the functions: the model and prediction also run
on Keras' JAX backend, without TensorFlow.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from c3ae_utils import paths
from c3ae_utils.shapes import CROPS_SHAPE

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "float16", "int8")
EXPORT_FORMATS = ("tflite_float32", "tflite_float16", "tflite_int8", "onnx")


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
    """The `.tflite` bytes of a SavedModel at one of `QUANTIZATIONS`."""
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
