"""Images per second of the face cache builder vs a faithful baseline of the reference's loop.

    python bench/bench_preprocess.py [--images 1000] [--baseline-images 300] [--workers 1 2]
        [--single-photos 100]

Baseline (the reference's approach): one process, one image at a time: decode, MTCNN detect,
align the first face (0.4 padding), MTCNN detect again on the aligned chip, cut the three
crops. Builder: `faces.build_cache` (batched detection, chunked atomic writes) once per
`--workers` count: 1 runs in this process, more on a local Dask cluster of that many worker
processes, timed end to end including the cluster's start-up. All run on the same UTKFace
subsample (the baseline on its first `--baseline-images` rows); the script prints images/s,
the ratios and the detection yield on the shared images. Last, the per-photo path of `c3ae
predict`: read one photo, find and crop its faces, predict their ages, one photo at a time
(warm, default weights), in milliseconds per photo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from c3ae_utils import datasets, faces  # noqa: E402


def _face_from_json(item: dict) -> faces.Face:
    x, y, width, height = item["box"]
    points = [item["keypoints"][name] for name in faces.LANDMARK_NAMES]
    return faces.Face([x, y, x + width, y + height], item["confidence"], points)


def reference_loop(image_paths: list[str]) -> tuple[float, dict[str, bool]]:
    """The reference's per-image loop; returns (seconds, path -> face found)."""
    from mtcnn import MTCNN

    detector = MTCNN()
    detector.detect_faces(np.zeros((64, 64, 3), np.uint8))  # build before timing
    found = {}
    started = time.perf_counter()
    for path in image_paths:
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        detections = detector.detect_faces(image)
        found[path] = bool(detections)
        if not detections:
            continue
        face = _face_from_json(detections[0])
        chip, matrix = faces.warp_to_chip(image, face)
        again = detector.detect_faces(chip)
        chip_face = _face_from_json(again[0]) if again else face.transformed(matrix)
        faces.context_crops(chip, chip_face)
    return time.perf_counter() - started, found


def builder(table, workers: int | None) -> tuple[float, set[str]]:
    """The cache builder end to end; returns (seconds, paths with a cached face)."""
    folder = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    try:
        started = time.perf_counter()
        faces.build_cache(table, folder / "bench", workers=workers)
        seconds = time.perf_counter() - started
        cache = faces.load_cache(folder / "bench")
        failures = cache.failures
        detected = set(table["path"]) - set(failures.loc[failures["reason"] == faces.REASON_NO_FACE, "path"])
        return seconds, detected
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def single_photo_ms(image_paths: list[str]) -> float:
    """Milliseconds per photo of `c3ae predict`'s path (read, detect, crop, predict), warm."""
    from c3ae_utils import inference

    estimator = inference.AgeEstimator.from_weights()
    estimator.predict_image(faces.read_image(image_paths[0]))  # builds the detector and the model
    started = time.perf_counter()
    for path in image_paths:
        estimator.predict_image(faces.read_image(path))
    return 1000 * (time.perf_counter() - started) / len(image_paths)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images for the cache builder")
    parser.add_argument("--baseline-images", type=int, default=300, help="images for the baseline loop")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="builder worker counts to time (1: this process; more: a local Dask cluster)")
    parser.add_argument("--single-photos", type=int, default=100, help="photos for the per-photo timing (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    table = datasets.subsample(datasets.load_metadata("utkface"), args.images, seed=args.seed)
    shared = table["path"].tolist()[: args.baseline_images]
    print(f"UTKFace subsample: {len(table)} images; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.1f} at start")

    base_seconds, base_found = reference_loop(shared)
    base_rate = len(shared) / base_seconds
    print(f"baseline (reference loop, 1 process): {len(shared)} images in {base_seconds:.1f} s = "
          f"{base_rate:.1f} images/s; face found on {np.mean([base_found[p] for p in shared]):.2%}")
    for workers in args.workers:
        build_seconds, detected = builder(table, workers)
        build_rate = len(table) / build_seconds
        where = "this process" if workers == 1 else f"local Dask cluster of {workers} workers"
        print(f"cache builder ({where}, incl. start-up): {len(table)} images in {build_seconds:.1f} s = "
              f"{build_rate:.1f} images/s ({build_rate / base_rate:.2f}x the baseline); face found on "
              f"{np.mean([p in detected for p in shared]):.2%} of the baseline's images "
              f"({len(detected) / len(table):.2%} of all)")
    if args.single_photos:
        milliseconds = single_photo_ms(table["path"].tolist()[: args.single_photos])
        print(f"c3ae predict path, one photo at a time (warm): {milliseconds:.0f} ms per photo "
              f"over {args.single_photos} photos")
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
