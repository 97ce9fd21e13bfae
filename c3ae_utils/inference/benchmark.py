"""How exported models compare with Keras: agreement of their ages (`compare_exports`) and
speed (`benchmark`, `measure_latency`) on the same crops."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from c3ae_utils import network
from c3ae_utils.inference.runners import load_runner
from c3ae_utils.shapes import CROPS_SHAPE


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
