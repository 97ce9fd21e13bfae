"""The `tf.data` input of C3AE: face crops from the cache -> augmented, labelled batches.

The whole split is held in memory as one uint8 tensor `[n, 3, 64, 64, 3]` (the UTKFace
train split is about 15k x 36,864 bytes = 0.55 GB; measured: building the dataset adds
about 1.1 GB to the process, TensorFlow's conversion of the NumPy array costing twice its
size, and takes ~5 s on 2 cores). The dataset shuffles *indices*, batches
them, then gathers the crops and augments the whole batch at once inside the graph
(vectorised over the batch, much faster than a per-sample `map`):

    range(n) -> shuffle -> [repeat] -> batch -> (gather crops and labels, augment) -> prefetch

Per batch, flip, rotation and erasing run on uint8 and only on the samples drawn for them
(partition, transform, stitch); contrast/brightness runs on the float32 batch. Rotation
(`ImageProjectiveTransformV3`, bilinear) is the most expensive step by far: about half the
CPU time of an augmented batch at the default probability.

Augmentation follows the reference implementation's set (random erasing, contrast and
brightness, rotation up to 15 degrees, horizontal flip) and applies the SAME random
parameters to the three scales of one sample, so the outer, middle and inner crops still
show the same face. Random numbers are stateless and derived from the seed and the batch
number, so the same seed gives the same batches whatever the parallelism.

Differences from the reference's Python generator, on purpose:

- The reference erases a rectangle of the full aligned image before cutting the three
  crops; the cache holds only the crops, so the same *relative* rectangle (fractions of
  the crop side) is erased in each of the three crops.
- The reference draws one flag in 0..3 and applies at most one of contrast/brightness
  (flags 1, 3), rotation (flag 2) or flip (`flag & 4`, which 0..3 never sets, so it never
  flips). Here each transform has its own probability (`Augmentation`), flips included.
  The default probabilities keep the reference's frequencies where it had them
  (contrast/brightness 1/2, rotation 1/4) and flip half of the faces.
- Contrast/brightness is `clip(alpha * x + beta, 0, 255)`; OpenCV's `convertScaleAbs` takes
  the absolute value first, which turns dark pixels pushed below 0 into bright ones.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from c3ae_utils import age_encoding

logger = logging.getLogger(__name__)

NUM_SCALES = 3
CROP_SIZE = 64
CROP_SHAPE = (NUM_SCALES, CROP_SIZE, CROP_SIZE, 3)


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
    if crops.ndim != 5 or crops.shape[1:] != CROP_SHAPE:
        raise ValueError(
            f"crops must have shape [n, {', '.join(map(str, CROP_SHAPE))}] (three 64x64 RGB scales "
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
    """Batches `(crops float32 [b, 3, 64, 64, 3], {"age": float32 [b, 1], "distribution": float32 [b, 12]})`.

    crops: uint8 `[n, 3, 64, 64, 3]`, RGB, scales outer/middle/inner; ages: `[n]` years.
    training: shuffle (reshuffled every pass) and augment; otherwise keep order, no augmentation.
    augment: None -> `Augmentation()` when training, off otherwise; True/False; or an
        `Augmentation` with custom probabilities and ranges (also allowed for evaluation,
        e.g. to display augmented faces in order).
    repeat: loop forever (use with `steps_per_epoch`); batches then run across epoch borders.
    shuffle_buffer: defaults to `n` (a perfect shuffle; only indices are buffered, so it is cheap).
    Pixel values stay raw 0-255 (white norm, if any, happens inside the model).
    """
    crops, age_values = validate_inputs(crops, ages)
    if not isinstance(batch_size, int | np.integer) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    augmentation = _resolve_augmentation(augment, training)
    num_samples = len(crops)
    distributions = age_encoding.encode(age_values)

    logger.debug("Dataset of %d faces, training=%s, batch %d, augmentation %s.",
                 num_samples, training, batch_size, augmentation)
    # Whole arrays become tensors captured by the input graph (one copy of the crops);
    # batches gather rows from them.
    crops_tensor = tf.constant(crops)
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
        images = tf.gather(crops_tensor, batch_indices)  # uint8
        if augmentation is None:
            images = tf.cast(images, tf.float32)
        else:
            images = augment_batch(images, tf.stack([epoch_seed, step]), augmentation)
        labels = {
            "age": tf.gather(ages_tensor, batch_indices),
            "distribution": tf.gather(distributions_tensor, batch_indices),
        }
        return images, labels

    dataset = batches.map(load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


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
    table = cache.table
    if "split" not in table.columns or "age" not in table.columns:
        raise ValueError(
            f"The cache table needs 'age' and 'split' columns; it has {list(table.columns)}. "
            "Rebuild the cache from a metadata table made by datasets.split."
        )
    mask = (table["split"] == split).to_numpy(dtype=bool)
    if not mask.any():
        available = sorted(table["split"].dropna().unique().tolist())
        raise ValueError(f"No rows with split == {split!r} in the cache; available: {available}.")
    return cache.crops[mask], table["age"].to_numpy(dtype=np.float32)[mask]


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


def augment_batch(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """Augment uint8 `[b, 3, 64, 64, 3]`; the same draw for the three scales of a sample.

    seed: int64 `[2]` for the stateless random ops. Output: float32, same shape, in [0, 255].
    Flip, rotation and erasing run on uint8 (4x less memory to move than float32) and only
    on the samples drawn for them; contrast/brightness runs on float32.
    """
    flip_seed, rotation_seed, erase_seed, color_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=4)
    )
    images = random_flip(images, flip_seed, augmentation.flip_probability)
    images = random_rotation(images, rotation_seed, augmentation)
    images = random_erase(images, erase_seed, augmentation)
    return random_color(tf.cast(images, tf.float32), color_seed, augmentation)


def _sample_flags(seed: tf.Tensor, batch: tf.Tensor, probability: float) -> tf.Tensor:
    """bool `[b]`: which samples of the batch get a transform."""
    return tf.random.stateless_uniform([batch], seed=seed) < probability


def _update_samples(images: tf.Tensor, flags: tf.Tensor, transform) -> tf.Tensor:
    """Apply `transform(selected [k, 3, 64, 64, 3], their batch indices [k])` to flagged samples only.

    Partition/stitch moves only whole samples and costs less than gather + scatter.
    """
    parts = tf.cast(flags, tf.int32)
    kept, selected = tf.dynamic_partition(images, parts, 2)
    kept_indices, selected_indices = tf.dynamic_partition(tf.range(tf.shape(images)[0]), parts, 2)
    changed = transform(selected, selected_indices)
    merged = tf.dynamic_stitch([kept_indices, selected_indices], [kept, changed])
    merged.set_shape(images.shape)
    return merged


def random_flip(images: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Mirror left-right (the width axis) with `probability`, the three scales together."""
    flags = _sample_flags(seed, tf.shape(images)[0], probability)

    def mirror(selected: tf.Tensor, _: tf.Tensor) -> tf.Tensor:
        # Reversing axis 1 of [k * 3 * 64, 64, 3] is much faster than axis 3 of the 5-D tensor.
        rows = tf.reshape(selected, [-1, CROP_SIZE, 3])
        return tf.reshape(tf.reverse(rows, axis=[1]), tf.shape(selected))

    return _update_samples(images, flags, mirror)


def rotation_transforms(angles: tf.Tensor, size: int = CROP_SIZE) -> tf.Tensor:
    """Projective transforms float32 `[k, 8]` rotating `size`x`size` images by `angles` (radians) about their centre.

    Each row maps an output pixel (x, y) to the input pixel it samples, as
    `ImageProjectiveTransformV3` expects.
    """
    cos, sin = tf.cos(angles), tf.sin(angles)
    centre = (size - 1) / 2.0
    offset_x = centre - (cos * centre - sin * centre)
    offset_y = centre - (sin * centre + cos * centre)
    zeros = tf.zeros_like(angles)
    return tf.stack([cos, -sin, offset_x, sin, cos, offset_y, zeros, zeros], axis=1)


def random_rotation(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """Rotate by one angle in +-max_rotation_degrees per sample (all three scales), black corners.

    Bilinear interpolation, like OpenCV's `warpAffine` in the reference; only the samples
    drawn for rotation go through the (comparatively expensive) resampling op.
    """
    batch = tf.shape(images)[0]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    flags = _sample_flags(seeds[0], batch, augmentation.rotation_probability)
    limit = augmentation.max_rotation_degrees * math.pi / 180.0
    angles = tf.random.stateless_uniform([batch], seeds[1], -limit, limit)

    def rotate(selected: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        transforms = rotation_transforms(tf.repeat(tf.gather(angles, indices), NUM_SCALES))
        # Resample in float32 and round: on uint8 the op truncates (a 1-level darkening).
        rotated = tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.reshape(tf.cast(selected, tf.float32), [-1, CROP_SIZE, CROP_SIZE, 3]),
            transforms=transforms,
            output_shape=tf.constant([CROP_SIZE, CROP_SIZE], tf.int32),
            fill_value=tf.constant(0.0),
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )
        return tf.reshape(tf.cast(tf.round(rotated), tf.uint8), tf.shape(selected))

    return _update_samples(images, flags, rotate)


def random_erase(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """Replace one random rectangle of uint8 `[b, 3, 64, 64, 3]` with uniform noise 0-255.

    The rectangle (fractions of the crop side) and its noise are the same in the three scales.
    """
    batch = tf.shape(images)[0]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=5))
    flags = _sample_flags(seeds[0], batch, augmentation.erase_probability)
    area = tf.random.stateless_uniform([batch], seeds[1], *augmentation.erase_area)
    aspect = tf.random.stateless_uniform([batch], seeds[2], *augmentation.erase_aspect)
    width = tf.minimum(tf.sqrt(area * aspect), 1.0)  # fractions of the crop side
    height = tf.minimum(tf.sqrt(area / aspect), 1.0)
    top_left = tf.random.stateless_uniform([batch, 2], seeds[3]) * tf.stack(
        [1.0 - height, 1.0 - width], axis=1
    )
    bottom_right = top_left + tf.stack([height, width], axis=1)
    centres = (tf.range(CROP_SIZE, dtype=tf.float32) + 0.5) / CROP_SIZE

    def erase(selected: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
        start, stop = tf.gather(top_left, indices), tf.gather(bottom_right, indices)
        rows = (centres[None, :] >= start[:, :1]) & (centres[None, :] < stop[:, :1])
        cols = (centres[None, :] >= start[:, 1:]) & (centres[None, :] < stop[:, 1:])
        inside = rows[:, None, :, None, None] & cols[:, None, None, :, None]
        noise_shape = tf.stack([tf.shape(selected)[0], 1, CROP_SIZE, CROP_SIZE, 3])
        noise = tf.random.stateless_uniform(noise_shape, seeds[4], 0, 256, dtype=tf.int32)
        return tf.where(inside, tf.cast(noise, tf.uint8), selected)

    return _update_samples(images, flags, erase)


def random_color(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
    """`clip(alpha * x + beta, 0, 255)` with one (alpha, beta) per sample (contrast, brightness)."""
    batch = tf.shape(images)[0]
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=3))
    flags = _sample_flags(seeds[0], batch, augmentation.color_probability)
    alpha = tf.random.stateless_uniform([batch], seeds[1], *augmentation.contrast)
    beta = tf.random.stateless_uniform([batch], seeds[2], *augmentation.brightness)
    # Samples not drawn get alpha 1, beta 0: unchanged, and clipping 0-255 values is a no-op.
    alpha = tf.where(flags, alpha, 1.0)
    beta = tf.where(flags, beta, 0.0)
    # A [b, pixels] view: broadcasting a [b, 1] factor is much faster than over a 5-D tensor.
    flat = tf.reshape(images, [batch, -1])
    adjusted = tf.clip_by_value(flat * alpha[:, None] + beta[:, None], 0.0, 255.0)
    return tf.reshape(adjusted, tf.shape(images))
