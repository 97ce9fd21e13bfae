"""Run exported C3AE models: `TFLiteRunner` (`.tflite`), `OnnxRunner` (`.onnx`), `load_runner`.

A runner maps crops float32 [n, 3, 64, 64, 3] to {"age": [n, 1], "distribution": [n, 12]},
like the Keras model, so `network.predict_ages` and `AgeEstimator` accept it in its place.
LiteRT, TensorFlow and ONNX Runtime are imported only when a runner is made.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from c3ae_utils import _quiet


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
    """A TFLite interpreter for `path`: LiteRT's when installed, TensorFlow's otherwise."""
    try:  # LiteRT is TFLite's new home; tf.lite.Interpreter still works in TF 2.21
        from ai_edge_litert.interpreter import Interpreter  # optional: TFLite without TensorFlow
    except ImportError:
        import tensorflow as tf  # export needs TensorFlow; prediction also runs on Keras' JAX backend

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    return _quiet.allocate_tflite_quietly(interpreter)  # TFLite's XNNPACK INFO line goes to fd 2


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
