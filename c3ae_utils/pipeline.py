"""The `tf.data` input of C3AE: face crops from the cache -> augmented, labelled batches.

The whole split is held in memory as one uint8 array `[n, 3, 64, 64, 3]` (36,864 bytes a
face). Augmented batches are gathered from the caller's NumPy array itself (no copy);
without augmentation the array becomes a TensorFlow constant (a copy). The dataset
shuffles *indices*, batches them, then gathers the crops and augments the whole batch in
one call:

    range(n) -> shuffle -> [repeat] -> batch -> (gather crops and labels, augment) -> prefetch

The augmentation (`augment_rows`) runs once per batch, called from the input graph through
one `tf.numpy_function`: NumPy draws the random parameters, then three calls do the work
without holding Python's GIL, so tf.data's threads run in parallel: a compiled (Numba) loop
gathers and flips the faces, one `cv2.remap` rotates every turned crop of the batch, and a
second compiled loop erases and recolours (`augment_kernels`). Why it is built this way,
with the measurements, is in bench/README.md.

Augmentation follows the reference implementation's set (random erasing, contrast and
brightness, rotation up to 15 degrees, horizontal flip) and applies the SAME random
parameters to the three scales of one sample, so the outer, middle and inner crops still
show the same face. The random numbers of a batch come from a NumPy generator seeded with
(a seeded random number per pass, the batch number), so the same seed gives the same
batches whatever the parallelism.

Differences from the reference's Python generator, on purpose:

- The reference erases a rectangle of the full aligned image before cutting the three
  crops; the cache holds only the crops, so the same *relative* rectangle (fractions of
  the crop side) is erased in each of the three crops.
- The reference draws one flag in 0..3 and applies at most one of contrast/brightness
  (flags 1, 3), rotation (flag 2) or flip (`flag & 4`, which 0..3 never sets, so it never
  flips). Here each transform has its own probability (`Augmentation`), flips included.
  The default probabilities keep the reference's frequencies where it had them
  (contrast/brightness 1/2, rotation 1/4) and flip half of the faces.
- Contrast/brightness is `clip(round(alpha * x + beta), 0, 255)` (a 256-entry table per
  sample); OpenCV's `convertScaleAbs` takes the absolute value first, which turns dark
  pixels pushed below 0 into bright ones.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from c3ae_utils import age_encoding
from c3ae_utils import augment_kernels as kernels
from c3ae_utils.shapes import CROP_SIZE, CROPS_SHAPE, NUM_SCALES

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation: the probability and range of each transform.

    Defaults follow the reference implementation's ranges (erased area 6-10% of the image,
    aspect 0.5-2, filled with uniform noise; contrast 0.5-2.5; brightness -50..50 grey
    levels; rotation -15..15 degrees). Probabilities are per sample; set one to 0 to
    switch that transform off.
    """

    erase_probability: float = 0.3
    erase_area: tuple[float, float] = (0.06, 0.10)  # fraction of the crop area
    erase_aspect: tuple[float, float] = (0.5, 2.0)  # width / height of the rectangle
    color_probability: float = 0.5
    contrast: tuple[float, float] = (0.5, 2.5)  # multiplies pixel values
    brightness: tuple[float, float] = (-50.0, 50.0)  # added, in grey levels (0-255)
    rotation_probability: float = 0.25
    max_rotation_degrees: float = 15.0
    flip_probability: float = 0.5

    def __post_init__(self) -> None:
        for name in ("erase_probability", "color_probability", "rotation_probability",
                     "flip_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Augmentation.{name} must be in [0, 1]; got {value}.")
        for name in ("erase_area", "erase_aspect", "contrast", "brightness"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"Augmentation.{name} must be (low, high) with low <= high; "
                                 f"got {(low, high)}.")
        if not 0.0 < self.erase_area[1] <= 1.0 or self.erase_aspect[0] <= 0:
            raise ValueError("Augmentation.erase_area must lie in (0, 1] and erase_aspect be > 0.")
        if not 0.0 <= self.max_rotation_degrees <= 180.0:
            raise ValueError("Augmentation.max_rotation_degrees must be in [0, 180]; "
                             f"got {self.max_rotation_degrees}.")


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Batches that cover `num_samples` once: `ceil(num_samples / batch_size)`.

    Pass it to `model.fit(steps_per_epoch=...)` with a `repeat=True` dataset (a finite
    dataset stalled ~9 s at the start of each epoch on CPU).
    """
    if num_samples <= 0 or batch_size <= 0:
        raise ValueError(
            f"num_samples and batch_size must be positive; got {num_samples} and {batch_size}."
        )
    return math.ceil(num_samples / batch_size)


def validate_inputs(crops: np.ndarray, ages: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check crops uint8 `[n, 3, 64, 64, 3]` and ages `[n]` (years); return ages as float32."""
    if not isinstance(crops, np.ndarray):
        raise ValueError(
            f"crops must be a NumPy array uint8 [n, 3, 64, 64, 3]; got {type(crops).__name__}. "
            "Use faces.load_cache(...).crops."
        )
    if crops.dtype != np.uint8:
        raise ValueError(
            f"crops must be uint8 (raw 0-255 pixels as stored in the face cache); got {crops.dtype}. "
            "Convert with crops.astype(np.uint8) only if the values are already 0-255."
        )
    if crops.ndim != 5 or crops.shape[1:] != CROPS_SHAPE:
        raise ValueError(
            f"crops must have shape [n, {', '.join(map(str, CROPS_SHAPE))}] (three 64x64 RGB scales "
            f"per face); got {list(crops.shape)}."
        )
    age_array = np.asarray(ages, dtype=np.float64)
    if age_array.ndim != 1:
        raise ValueError(f"ages must be one-dimensional [n]; got shape {list(age_array.shape)}.")
    if len(age_array) != len(crops):
        raise ValueError(
            f"crops and ages have different lengths ({len(crops)} vs {len(age_array)}); pass the "
            "rows of the same table (e.g. cache.crops[mask] and cache.table.age[mask])."
        )
    if len(crops) == 0:
        raise ValueError("No samples: crops and ages are empty (check the split name and cache).")
    age_encoding.count_clipped(age_array)  # raises ValueError for NaN or negative ages
    return crops, age_array.astype(np.float32)


# tf.data's model-based autotuner runs a thread that an iterator's destructor waits for: on a
# busy 2-core CPU the end of a `fit` stalled 2-21 s (measured). Without it, AUTOTUNE still means
# one parallel call per core and a self-sizing prefetch buffer; the batches are the same.
_PIPELINE_OPTIONS = tf.data.Options()
_PIPELINE_OPTIONS.autotune.enabled = False


def make_dataset(
    crops: np.ndarray,
    ages: ArrayLike,
    training: bool,
    batch_size: int = 32,
    seed: int = 0,
    augment: bool | Augmentation | None = None,
    repeat: bool = False,
    shuffle_buffer: int | None = None,
) -> tf.data.Dataset:
    """Batches `(crops uint8 [b, 3, 64, 64, 3], {"age": float32 [b, 1], "distribution": float32 [b, 12]})`.

    crops: uint8 `[n, 3, 64, 64, 3]`, RGB, scales outer/middle/inner; ages: `[n]` years.
    training: shuffle (reshuffled every pass) and augment; otherwise keep order, no augmentation.
    augment: None -> `Augmentation()` when training, off otherwise; True/False; or an
        `Augmentation` with custom probabilities and ranges (also allowed for evaluation,
        e.g. to display augmented faces in order).
    repeat: loop forever (use with `steps_per_epoch`); batches then run across epoch borders.
    shuffle_buffer: defaults to `n` (a perfect shuffle; only indices are buffered, so it is cheap).
    Pixel values stay raw 0-255 uint8: Keras casts a model's inputs to its float32 `Input`
    (white norm, if any, happens inside the model), so the cast runs inside the training
    step (on the GPU when there is one), and batches in flight take a quarter of the memory.
    """
    crops, age_values = validate_inputs(crops, ages)
    if not isinstance(batch_size, int | np.integer) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    augmentation = _resolve_augmentation(augment, training)
    num_samples = len(crops)
    distributions = age_encoding.encode(age_values)

    logger.debug("Dataset of %d faces, training=%s, batch %d, augmentation %s.",
                 num_samples, training, batch_size, augmentation)
    # Labels become tensors captured by the input graph. The crops stay a NumPy array when
    # augmenting (the NumPy step gathers its own batch; no TensorFlow copy of the split).
    crops_tensor = tf.constant(crops) if augmentation is None else None
    ages_tensor = tf.constant(age_values[:, None])
    distributions_tensor = tf.constant(distributions)

    indices = tf.data.Dataset.range(num_samples)
    if training:
        buffer = num_samples if shuffle_buffer is None else int(shuffle_buffer)
        if buffer <= 0:
            raise ValueError(f"shuffle_buffer must be positive; got {shuffle_buffer}.")
        indices = indices.shuffle(buffer, seed=int(seed), reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    # Each batch's augmentation seed is (a seeded random number, batch number). The random
    # number changes with every pass over a finite dataset, so a second epoch does not
    # repeat the first one's augmentation batch for batch.
    epoch_seeds = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True)
    batches = tf.data.Dataset.zip(epoch_seeds, indices.batch(batch_size).enumerate())

    def load_batch(epoch_seed: tf.Tensor, numbered: tuple[tf.Tensor, tf.Tensor]):
        step, batch_indices = numbered
        if augmentation is None:
            images = tf.gather(crops_tensor, batch_indices)
        else:
            images = augment_batch(crops, batch_indices, tf.stack([epoch_seed, step]), augmentation)
        labels = {
            "age": tf.gather(ages_tensor, batch_indices),
            "distribution": tf.gather(distributions_tensor, batch_indices),
        }
        return images, labels

    dataset = batches.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(_PIPELINE_OPTIONS)


def from_cache(
    cache,
    split: str,
    training: bool | None = None,
    batch_size: int = 32,
    seed: int = 0,
    **options,
) -> tf.data.Dataset:
    """`make_dataset` on the rows of one split (`"train"`, `"val"`, `"test"`) of a `faces.FaceCache`.

    training defaults to `split == "train"`; `options` go to `make_dataset` (augment, repeat, ...).
    """
    crops, ages = split_arrays(cache, split)
    if training is None:
        training = split == "train"
    return make_dataset(crops, ages, training=training, batch_size=batch_size, seed=seed, **options)


def split_arrays(cache, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Crops uint8 `[m, 3, 64, 64, 3]` and ages float32 `[m]` of one split of a `faces.FaceCache`."""
    selected = cache.select(split)
    return selected.crops, selected.table["age"].to_numpy(dtype=np.float32)


def _resolve_augmentation(
    augment: bool | Augmentation | None, training: bool
) -> Augmentation | None:
    """The augmentation to apply, or None for none."""
    if augment is None:
        return Augmentation() if training else None
    if isinstance(augment, Augmentation):
        return augment
    if isinstance(augment, bool):
        return Augmentation() if augment else None
    raise ValueError(f"augment must be None, a bool or an Augmentation; got {augment!r}.")


def augment_batch(
    crops: np.ndarray, indices: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation
) -> tf.Tensor:
    """The augmented batch uint8 `[b, 3, 64, 64, 3]` of rows `indices` int64 `[b]` of uint8 `crops`.

    seed: int64 `[2]` (a random number per pass, the batch number). One `tf.numpy_function`
    call per batch: `augment_rows` gathers the rows (`tf.gather` cost about 14 us per face here)
    and transforms them.
    """

    faces = _as_rows(crops)  # a view of the caller's array when it is C-contiguous

    def gather_and_augment(rows: np.ndarray, batch_seed: np.ndarray) -> np.ndarray:
        return augment_rows(faces, rows, batch_seed, augmentation)

    augmented = tf.numpy_function(gather_and_augment, [indices, seed], tf.uint8, stateful=False)
    augmented.set_shape([None, *CROPS_SHAPE])
    return augmented


@dataclass(frozen=True)
class Draw:
    """The random parameters of one batch of `b` samples (NumPy arrays, one row per sample).

    flip, rotate, erase, color: bool `[b]`, which samples get each transform; angles: `[b]`
    radians; boxes: int `[b, 4]` erased (top, left, bottom, right) pixels, bottom/right
    exclusive; alpha: `[b]` contrast factor; beta: `[b]` brightness offset in grey levels.
    """

    flip: np.ndarray
    rotate: np.ndarray
    angles: np.ndarray
    erase: np.ndarray
    boxes: np.ndarray
    color: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


def draw(rng: np.random.Generator, batch: int, augmentation: Augmentation) -> Draw:
    """Draw every parameter for `batch` samples; the same numbers are drawn whatever the flags."""
    limit = math.radians(augmentation.max_rotation_degrees)
    flags = rng.random((4, batch)) < np.array([
        augmentation.flip_probability, augmentation.rotation_probability,
        augmentation.erase_probability, augmentation.color_probability,
    ])[:, None]
    angles = rng.uniform(-limit, limit, batch)
    area = rng.uniform(*augmentation.erase_area, batch)  # fraction of the crop
    aspect = rng.uniform(*augmentation.erase_aspect, batch)  # width / height
    size = np.minimum(np.stack([np.sqrt(area / aspect), np.sqrt(area * aspect)], axis=1), 1.0)
    start = rng.random((batch, 2)) * (1.0 - size)  # (top, left), fractions of the side
    # Pixel i (centre (i + 0.5) / 64) is erased iff start <= (i + 0.5) / 64 < start + size.
    boxes = np.ceil(np.concatenate([start, start + size], axis=1) * CROP_SIZE - 0.5).astype(int)
    alpha = rng.uniform(*augmentation.contrast, batch)
    beta = rng.uniform(*augmentation.brightness, batch)
    return Draw(flags[0], flags[1], angles, flags[2], boxes, flags[3], alpha, beta)


def augment_crops(crops: np.ndarray, seed: ArrayLike, augmentation: Augmentation) -> np.ndarray:
    """Flip, rotate, erase and recolour uint8 crops `[b, 3, 64, 64, 3]`: a new uint8 array.

    seed: integers seeding NumPy's generator (the pipeline passes (a random number per pass,
    batch number)). Each transform hits the samples drawn for it, in that order, and the
    three scales of a sample always share its parameters (and erasing noise).
    """
    faces = _as_rows(crops)
    return augment_rows(faces, np.arange(len(faces)), seed, augmentation)


def augment_rows(
    rows_of: np.ndarray, rows: np.ndarray, seed: ArrayLike, augmentation: Augmentation
) -> np.ndarray:
    """`augment_crops` of the faces `rows` int `[b]` of uint8 `rows_of` `[n, 36864]` (flattened crops).

    Gathering is part of the first compiled loop, so the pipeline never copies the batch
    before augmenting it. Returns uint8 `[b, 3, 64, 64, 3]`.
    """
    rng = np.random.default_rng(_seed_words(seed))
    parameters = draw(rng, len(rows), augmentation)
    noise, noise_end = _erase_noise(rng, parameters)
    out = np.empty((len(rows), kernels.FACE_BYTES), np.uint8)
    kernels.gather_and_flip(rows_of, np.asarray(rows, np.int64), parameters.flip, out)
    turned = np.flatnonzero(parameters.rotate)
    rotated = _rotate(out, turned, rotation_matrices(parameters.angles[turned]))
    kernels.finish(out, turned, rotated, parameters.erase, parameters.boxes, noise, noise_end,
                   parameters.color, _color_tables(parameters))
    return out.reshape(-1, *CROPS_SHAPE)


def _as_rows(crops: np.ndarray) -> np.ndarray:
    """uint8 crops `[n, 3, 64, 64, 3]` as C-contiguous rows `[n, 36864]` (a view when possible)."""
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.shape[1:] != CROPS_SHAPE:
        raise ValueError(f"crops must be uint8 [n, {', '.join(map(str, CROPS_SHAPE))}]; "
                         f"got {crops.dtype} {list(crops.shape)}.")
    return np.ascontiguousarray(crops).reshape(len(crops), -1)


def _rotate(faces: np.ndarray, turned: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """The faces `turned` of uint8 `faces` `[b, 36864]` resampled by `matrices` `[k, 2, 3]`.

    Returns uint8 `[k * 3 * 64, 64, 4]` (RGBA crops stacked). Bilinear `cv2.remap` on all
    of them at once (84 faces per call at most, see `augment_kernels.FACES_PER_REMAP`);
    it agrees with OpenCV's `warpAffine`, the reference's rotation, within one grey level.
    """
    turned = np.asarray(turned, np.int64)
    parts = []
    for start in range(0, len(turned), kernels.FACES_PER_REMAP):
        chunk = slice(start, start + kernels.FACES_PER_REMAP)
        crops = len(turned[chunk]) * NUM_SCALES
        padded = np.empty((crops, kernels.PADDED_ROWS, CROP_SIZE, 4), np.uint8)
        map_x = np.empty((crops * CROP_SIZE, CROP_SIZE), np.float32)
        map_y = np.empty_like(map_x)
        kernels.rotation_inputs(faces, turned[chunk], matrices[chunk], padded, map_x, map_y)
        # RGBA because OpenCV resamples 4-channel pixels about 1.5x faster than 3-channel ones.
        parts.append(cv2.remap(padded.reshape(-1, CROP_SIZE, 4), map_x, map_y, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0))
    if not parts:
        return np.empty((0, CROP_SIZE, 4), np.uint8)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _erase_noise(rng: np.random.Generator, parameters: Draw) -> tuple[np.ndarray, np.ndarray]:
    """Uniform 0-255 noise for every erased box, from one `rng.bytes` call.

    Returns (uint8 `[total]`, int64 `[b]` where each sample's noise ends). Sized to the boxes:
    a full 64x64 patch per sample cost 10x the bytes.
    """
    boxes = parameters.boxes
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * 3 * parameters.erase
    ends = np.cumsum(sizes).astype(np.int64)
    total = int(ends[-1]) if len(ends) else 0
    return np.frombuffer(rng.bytes(total), np.uint8), ends


def _color_tables(parameters: Draw) -> np.ndarray:
    """uint8 `[b, 256]`: `clip(round(alpha * level + beta), 0, 255)` for each sample."""
    levels = np.arange(256) * parameters.alpha[:, None] + parameters.beta[:, None]
    return np.clip(np.rint(levels), 0, 255).astype(np.uint8)


def _seed_words(seed: ArrayLike) -> list[int]:
    """Non-negative integers for `np.random.default_rng` from any int64 seed values."""
    return [int(value) & 0xFFFFFFFFFFFFFFFF for value in np.ravel(seed)]


def rotation_matrices(angles: ArrayLike, size: int = CROP_SIZE) -> np.ndarray:
    """float64 `[k, 2, 3]` affine maps turning `size`x`size` images by `angles` (radians) about their centre.

    Each maps an OUTPUT pixel (x, y, 1) to the input pixel it samples (OpenCV's
    `WARP_INVERSE_MAP` convention; the first six numbers of TensorFlow's projective transforms).
    """
    angles = np.asarray(angles, dtype=np.float64)
    cos, sin = np.cos(angles), np.sin(angles)
    centre = (size - 1) / 2.0
    offset_x = centre - (cos * centre - sin * centre)
    offset_y = centre - (sin * centre + cos * centre)
    return np.stack([np.stack([cos, -sin, offset_x], -1), np.stack([sin, cos, offset_y], -1)], axis=1)


def warp_crops(crops: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Resample uint8 crops `[k, 3, 64, 64, 3]` with one affine map `[k, 2, 3]` per sample (all its scales).

    matrices: output pixel -> input pixel, as made by `rotation_matrices`. Bilinear (as
    OpenCV's `warpAffine` in the reference); pixels falling outside the crop are black.
    Returns a new uint8 array of the same shape. The augmentation's own code path.
    """
    faces = _as_rows(crops)
    matrices = np.asarray(matrices, np.float64).reshape(-1, 2, 3)
    if len(matrices) != len(faces):
        raise ValueError(f"Need one matrix per sample: {len(faces)} samples, {len(matrices)} matrices.")
    everyone = np.arange(len(faces))
    rotated = _rotate(faces, everyone, matrices)
    out = np.empty_like(faces)
    kernels.put_rotated(out, everyone, rotated)
    return out.reshape(crops.shape)
