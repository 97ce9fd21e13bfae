"""Prediction: `predict_ages`, the one batched predictor of ages and distributions, for Keras
models and for exported runners alike."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from tqdm.auto import tqdm

from c3ae_utils import age_encoding
from c3ae_utils.shapes import CROPS_SHAPE


class NonFiniteAges(ValueError):
    """A model's outputs hold NaN or infinity: its weights are broken (e.g. a diverged run)."""


def _check_crops(crops: np.ndarray) -> np.ndarray:
    """`crops` as an array of shape `[n, 3, 64, 64, 3]`; ValueError naming the shape otherwise."""
    crops = np.asarray(crops)
    if crops.ndim != 5 or crops.shape[1:] != CROPS_SHAPE:
        raise ValueError(f"Expected crops of shape [n, 3, 64, 64, 3]; got {crops.shape}.")
    return crops


def _call_once(model: keras.Model | Callable, batch: np.ndarray) -> dict[str, np.ndarray]:
    """One forward pass: `predict_on_batch` for Keras models (no `predict` overhead), a plain
    call for exported runners; the outputs as `{"age": [b], "distribution": [b, bins]}`."""
    outputs = getattr(model, "predict_on_batch", model)(batch)
    if isinstance(outputs, list | tuple) and hasattr(model, "output_names"):
        outputs = dict(zip(model.output_names, outputs, strict=True))
    if not isinstance(outputs, dict) or not {"age", "distribution"} <= set(outputs):
        raise ValueError(
            "The model must return a dict with 'age' and 'distribution' (see network.build_c3ae); "
            f"got {type(outputs).__name__}."
        )
    return {
        "age": np.asarray(outputs["age"], np.float32).reshape(len(batch), -1)[:, 0],
        "distribution": np.asarray(outputs["distribution"], np.float32),
    }


def _check_finite(outputs: dict[str, np.ndarray], model: keras.Model | Callable) -> dict[str, np.ndarray]:
    """`outputs` (`{"age": [n], "distribution": [n, bins]}`) when every value is finite;
    else ValueError naming the model: NaN or infinite ages come from broken weights."""
    broken = ~np.isfinite(outputs["age"]) | ~np.isfinite(outputs["distribution"]).all(axis=1)
    if broken.any():
        name = getattr(model, "name", type(model).__name__)
        raise NonFiniteAges(
            f"The model {name!r} outputs non-finite ages (NaN or infinity) for {int(broken.sum())} "
            f"of {len(broken)} faces: its weights are broken (e.g. a training run that diverged); "
            "use other weights."
        )
    return outputs


def predict_ages(
    model: keras.Model | Callable, crops: np.ndarray, batch_size: int = 256, progress: bool = False,
    flip: bool = False,
) -> dict[str, np.ndarray]:
    """Ages and distributions of faces: crops uint8/float32 `[n, 3, 64, 64, 3]` (RGB, 0-255) ->
    `{"age": float32 [n] in years (the W2 head), "distribution": float32 [n, num_bins]}`.

    `model` is a Keras C3AE model or a callable returning the same dict (an exported
    `inference.TFLiteRunner` / `OnnxRunner`). Batches are padded to a power of two (at most
    `batch_size`), so a compiled model sees few distinct shapes and traces few times.
    `flip=True` is test-time augmentation: the mean of the outputs for the crops and for their
    mirror images (twice the work). A model that outputs a NaN or infinite age or probability
    is refused (ValueError naming it): such a number is never an age.
    """
    if flip:
        mirrored = np.ascontiguousarray(_check_crops(crops)[:, :, :, ::-1])  # axis 3: crop width
        plain, flipped = (predict_ages(model, part, batch_size, progress) for part in (crops, mirrored))
        return {key: (plain[key] + flipped[key]) / 2 for key in plain}
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size}).")
    crops = _check_crops(crops)
    count = len(crops)
    size = min(batch_size, 1 << max(0, count - 1).bit_length())
    parts = []
    starts = range(0, count, size)
    for start in tqdm(starts, desc="predict", unit="batch", disable=not progress, leave=False):
        batch = crops[start : start + size].astype(np.float32)
        used = len(batch)
        if used < size:
            batch = np.concatenate([batch, np.zeros((size - used, *CROPS_SHAPE), np.float32)])
        outputs = _call_once(model, batch)
        parts.append({key: value[:used] for key, value in outputs.items()})
    if not parts:
        return {"age": np.zeros(0, np.float32), "distribution": np.zeros((0, age_encoding.NUM_BINS), np.float32)}
    outputs = {key: np.concatenate([part[key] for part in parts]) for key in ("age", "distribution")}
    return _check_finite(outputs, model)

