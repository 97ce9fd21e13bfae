"""Samples per second of the tf.data pipeline vs a CPU training step vs the reference's generator.

    python bench/bench_pipeline.py                    # 2,000 real UTKFace images, batch 32
    python bench/bench_pipeline.py --images 500 --batches 50   # a quick look

Everything runs in one process, on the same real UTKFace images:

- **pipeline**: `pipeline.make_dataset(training=True, repeat=True)` with the default
  augmentation, iterated alone (nothing consumes the batches);
- **pipeline, no augmentation**: the same in evaluation mode, for scale;
- **reference generator**: a faithful re-implementation (our code) of how the reference
  C3AE repository feeds training: for every sample, decode the JPEG bytes with OpenCV,
  random-erase the full image, pad it by 200 px, cut the three boxes and resize them to
  64x64, then pick one of contrast/brightness, rotation or flip for the three crops, and
  build the two-point label in Python; a batch is a NumPy stack;
- **training step**: `network.build_c3ae()` (SE, white norm) compiled by
  `training.compile_model` (Adam, L1 + 10 x KL), fed one in-memory batch, both with
  `train_on_batch` and with `model.fit` on a repeated in-memory batch;
- **fit fed by the pipeline**: `model.fit` on the pipeline itself: if it matches the
  in-memory `fit`, the input is not the bottleneck.

The pipeline starts from the face cache's crops (uint8, decoded once), the generator from
JPEG bytes; that difference is the point of the cache. Both hand out uint8 batches (Keras
casts them to the model's float32 input). Here both use the same three centred boxes of
each 200x200 UTKFace image (outer 100%, middle 75%, inner 50%) instead of MTCNN boxes,
which does not change the cost. Each row is the median of `--repeats` timed runs; the
pipeline and the generator are timed in `--rounds` alternating pairs (see `paired`).
Targets (issue 4): pipeline >= 3x what a CPU training step consumes and >= 5x the reference
generator. Timings on a shared machine are noisy: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from c3ae_utils import age_encoding, paths

BOX_FRACTIONS = (1.0, 0.75, 0.5)  # outer, middle, inner: side as a fraction of the image side
PADDING = 200  # the reference pads the aligned image by 200 px before cutting the boxes
PIPELINE = "pipeline (tf.data, default augmentation)"
GENERATOR = "reference Python generator (OpenCV, per sample)"
TRAIN_STEP = "training step: fit (in-memory batch)"


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def utkface_files(count: int, seed: int = 0) -> list[Path]:
    """`count` UTKFace JPEG paths drawn at random (fixed seed) from the extracted dataset."""
    folder = paths.raw_dir() / "utkface" / "UTKFace"
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise FileNotFoundError(
            f"No UTKFace images in {folder}; run `python -m c3ae_utils.datasets fetch utkface` first."
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), size=min(count, len(files)), replace=False)
    return [files[index] for index in sorted(chosen)]


def age_of(path: Path) -> int:
    """The age (years) in a UTKFace file name `<age>_<gender>_<race>_<date>.jpg.chip.jpg`."""
    return int(path.name.split("_")[0])


def centred_boxes(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Three nested squares (top, left, bottom, right) centred in a `height` x `width` image."""
    side = min(height, width)
    boxes = []
    for fraction in BOX_FRACTIONS:
        crop = int(side * fraction)
        top, left = (height - crop) // 2, (width - crop) // 2
        boxes.append((top, left, top + crop, left + crop))
    return boxes


def cache_crops(encoded: list[bytes]) -> np.ndarray:
    """What the face cache would hold: uint8 `[n, 3, 64, 64, 3]` RGB crops, decoded once."""
    crops = np.empty((len(encoded), 3, 64, 64, 3), np.uint8)
    for row, data in enumerate(encoded):
        image = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        for scale, (top, left, bottom, right) in enumerate(centred_boxes(*image.shape[:2])):
            crops[row, scale] = cv2.resize(image[top:bottom, left:right], (64, 64), interpolation=cv2.INTER_AREA)
    return crops


# --------------------------------------------------------------------------------------
# The reference's way: a Python generator, one sample at a time (our re-implementation)
# --------------------------------------------------------------------------------------


def erase_rectangle(image: np.ndarray, probability: float = 0.3) -> np.ndarray:
    """With `probability`, fill a rectangle of 6-10% of the area (aspect 0.5-2) with noise."""
    if random.random() >= probability:
        return image
    image = image.copy()
    height, width = image.shape[:2]
    area = height * width * np.random.uniform(0.06, 0.10)
    aspect = np.random.uniform(0.5, 2.0)
    top, left = random.randint(0, height - 1), random.randint(0, width - 1)
    bottom = min(height, int(top + np.sqrt(area / aspect)))
    right = min(width, int(left + np.sqrt(area * aspect)))
    image[top:bottom, left:right] = np.random.randint(0, 256, (bottom - top, right - left, 3))
    return image


def enforce(crop: np.ndarray, flag: int, contrast: float, brightness: float, degrees: float) -> np.ndarray:
    """At most one transform per crop, chosen by `flag` as in the reference (flag & 4 is never set by 0..3)."""
    if flag & 1:
        return cv2.convertScaleAbs(crop, alpha=contrast, beta=brightness)
    if flag & 2:
        height, width = crop.shape[:2]
        matrix = cv2.getRotationMatrix2D((width // 2, height // 2), degrees, 1)
        return cv2.warpAffine(crop, matrix, (width, height))
    if flag & 4:
        return cv2.flip(crop, 1)
    return crop


def two_point_label(age: float, num_bins: int = 12, bin_width: int = 10) -> list[float]:
    """One two-point distribution, built in Python for one sample (ages past the last bin clipped)."""
    label = [0.0] * num_bins
    position = min(age, (num_bins - 1) * bin_width) / bin_width
    lower = min(int(position), num_bins - 1)
    label[lower] += 1.0 - (position - lower)
    if lower + 1 < num_bins:
        label[lower + 1] += position - lower
    return label


def reference_sample(data: bytes, training: bool = True) -> np.ndarray:
    """uint8 `[3, 64, 64, 3]` (BGR) from JPEG bytes: decode, erase, pad, crop, augment."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if training:
        image = erase_rectangle(image)
    padded = cv2.copyMakeBorder(image, PADDING, PADDING, PADDING, PADDING, cv2.BORDER_CONSTANT)
    crops = [
        cv2.resize(padded[top + PADDING : bottom + PADDING, left + PADDING : right + PADDING], (64, 64))
        for top, left, bottom, right in centred_boxes(*image.shape[:2])
    ]
    if training:
        flag = random.randint(0, 3)
        contrast, brightness = random.uniform(0.5, 2.5), random.uniform(-50, 50)
        degrees = random.randint(-15, 15)
        crops = [enforce(crop, flag, contrast, brightness, degrees) for crop in crops]
    return np.stack(crops)


def reference_generator(encoded: list[bytes], ages: np.ndarray, batch_size: int) -> Iterator:
    """Endless batches `(uint8 [b, 3, 64, 64, 3], {"age": [b], "distribution": [b, 12]})`."""
    while True:
        order = np.random.permutation(len(encoded))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            rows = order[start : start + batch_size]
            images = np.array([reference_sample(encoded[row]) for row in rows])
            labels = {
                "age": ages[rows],
                "distribution": np.array([two_point_label(ages[row]) for row in rows], np.float32),
            }
            yield images, labels


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


Measurement = tuple[float, float]  # (samples per second of wall time, CPU milliseconds per sample)


REPEATS = 3  # each row is the median of this many timed runs (set by --repeats)
ROUNDS = 5  # paired pipeline/generator rounds for the headline ratio (set by --rounds)


def timed(next_batch: Callable[[], object], batches: int, batch_size: int) -> Measurement:
    """Throughput of calling `next_batch` `batches` times.

    CPU time (all threads of this process) per sample depends much less on what else runs
    on the machine than wall time does.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next_batch()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    samples = batches * batch_size
    return samples / wall, 1000.0 * cpu / samples


def median(runs: list[Measurement]) -> Measurement:
    """The run with the median samples/s (with its own CPU time)."""
    return sorted(runs)[len(runs) // 2]


def measure(next_batch: Callable[[], object], batches: int, batch_size: int, warmup: int) -> Measurement:
    """Median over `REPEATS` timed runs of `batches` calls to `next_batch`, after `warmup` calls."""
    for _ in range(warmup):
        next_batch()
    return median([timed(next_batch, batches, batch_size) for _ in range(REPEATS)])


def paired(
    new_pipeline: Callable[[], Iterator], generator_batch: Callable[[], object],
    batches: int, generator_batches: int, batch_size: int, warmup: int,
) -> tuple[Measurement, Measurement, list[float]]:
    """Pipeline and generator timed in alternation, `ROUNDS` times; (median, median, ratio per round).

    On a shared machine the speed drifts over seconds; a ratio of two runs taken back to back
    drifts much less than two rows measured a minute apart. Each round makes a new pipeline
    iterator and deletes it before the generator's turn, so that no tf.data thread keeps
    prefetching while the generator is timed.
    """
    for _ in range(2):
        generator_batch()
    pipeline_runs, generator_runs = [], []
    for _ in range(ROUNDS):
        batches_iterator = new_pipeline()
        for _ in range(warmup):
            next(batches_iterator)
        pipeline_runs.append(timed(batches_iterator.__next__, batches, batch_size))
        del batches_iterator
        generator_runs.append(timed(generator_batch, generator_batches, batch_size))
    ratios = [mine[0] / theirs[0] for mine, theirs in zip(pipeline_runs, generator_runs, strict=True)]
    return median(pipeline_runs), median(generator_runs), ratios


def measure_fit(model, dataset, steps: int, batch_size: int) -> Measurement:
    """Throughput of `model.fit` over `steps` batches of `dataset` (after a short warm-up fit)."""
    model.fit(dataset, epochs=1, steps_per_epoch=max(3, steps // 10), verbose=0)
    return measure(
        lambda: model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0), 1, steps * batch_size, 0
    )


def build_model():
    """The three-scale C3AE with SE and white norm, compiled as training does (Adam, L1 + 10 x KL)."""
    from c3ae_utils import network, training

    return training.compile_model(network.build_c3ae(), loss="kl")


def run(
    images: int, batch_size: int, batches: int, train_steps: int, seed: int
) -> tuple[pd.DataFrame, list[float]]:
    """Measure every row of the table; returns it (with ratios) and the paired pipeline/generator ratios."""
    import tensorflow as tf

    from c3ae_utils import pipeline

    random.seed(seed)
    np.random.seed(seed)
    files = utkface_files(images, seed)
    encoded = [path.read_bytes() for path in files]
    ages = np.array([age_of(path) for path in files], np.float32)
    started = time.perf_counter()
    crops = cache_crops(encoded)
    logging.info("Decoded %d images into cache-style crops in %.1f s.", len(files), time.perf_counter() - started)

    rows = []
    warmup = max(5, batches // 10)

    def pipeline_row(name: str, **options) -> None:
        batches_iterator = iter(
            pipeline.make_dataset(
                crops, ages, training=True, batch_size=batch_size, seed=seed, repeat=True, **options
            )
        )
        rows.append((name, *measure(lambda: next(batches_iterator), batches, batch_size, warmup)))

    default = pipeline.make_dataset(crops, ages, training=True, batch_size=batch_size, seed=seed, repeat=True)
    generator = reference_generator(encoded, ages, batch_size)
    generator_batches = max(10, batches // 4)  # it is slow: fewer batches give the same precision
    mine, theirs, ratios = paired(lambda: iter(default), lambda: next(generator), batches,
                                  generator_batches, batch_size, warmup)
    rows += [(PIPELINE, *mine), (GENERATOR, *theirs)]
    pipeline_row("pipeline, augmentation without rotation",
                 augment=pipeline.Augmentation(rotation_probability=0.0))
    pipeline_row("pipeline, no augmentation", augment=False)

    model = build_model()
    x = tf.constant(crops[:batch_size])  # uint8, as the pipeline delivers (the model casts)
    y = {
        "age": tf.constant(ages[:batch_size, None]),
        "distribution": tf.constant(age_encoding.encode(ages[:batch_size])),
    }
    rows.append(("training step: train_on_batch (in-memory batch)",
                 *measure(lambda: model.train_on_batch(x, y), train_steps, batch_size, 5)))
    in_memory = tf.data.Dataset.from_tensors((x, y)).repeat()
    rows.append((TRAIN_STEP, *measure_fit(model, in_memory, train_steps, batch_size)))
    fed = pipeline.make_dataset(crops, ages, training=True, batch_size=batch_size, seed=seed, repeat=True)
    rows.append(("fit fed by the pipeline (end to end)", *measure_fit(model, fed, train_steps, batch_size)))

    table = pd.DataFrame(rows, columns=["what", "samples/s", "CPU ms/sample"]).set_index("what")
    table["x training step"] = table["samples/s"] / table.loc[TRAIN_STEP, "samples/s"]
    table["x reference generator"] = table["samples/s"] / table.loc[GENERATOR, "samples/s"]
    table["CPU x reference generator"] = table.loc[GENERATOR, "CPU ms/sample"] / table["CPU ms/sample"]
    return table, ratios


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="real UTKFace images to use")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=200, help="timed pipeline batches")
    parser.add_argument("--train-steps", type=int, default=100, help="timed training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed runs per row (median kept)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="paired pipeline/generator rounds")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    globals().update(REPEATS=max(1, args.repeats), ROUNDS=max(1, args.rounds))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import tensorflow as tf

    load_before = os.getloadavg()
    table, ratios = run(args.images, args.batch_size, args.batches, args.train_steps, args.seed)
    load_after = os.getloadavg()
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"TensorFlow {tf.__version__}; {args.images} UTKFace images, batch {args.batch_size}; "
          f"1-min load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.")
    print(table.to_string(float_format=lambda value: f"{value:,.2f}"))
    row = table.loc[PIPELINE]
    print(f"\nTargets: pipeline / training step = {row['x training step']:.1f} (>= 3); "
          f"pipeline / reference generator = {row['x reference generator']:.1f} (>= 5) in wall "
          f"time, {row['CPU x reference generator']:.1f} in CPU time per sample.")
    print(f"Pipeline / generator in {len(ratios)} paired rounds: median {np.median(ratios):.1f}, "
          f"min {min(ratios):.1f}, max {max(ratios):.1f} ({', '.join(f'{r:.1f}' for r in ratios)}).")


if __name__ == "__main__":
    main()
