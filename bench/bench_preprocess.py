"""Images per second of the face cache builder vs a faithful baseline of the reference's loop.

    python bench/bench_preprocess.py [--images 1000] [--baseline-images 300] [--workers K]

Baseline (the reference's approach): one process, one image at a time: decode, MTCNN detect,
align the first face (0.4 padding), MTCNN detect again on the aligned chip, cut the three
crops. Builder: `faces.build_cache` (all cores, batched detection, chunked atomic writes),
timed end to end including its worker start-up. Both run on the same UTKFace subsample (the
baseline on its first `--baseline-images` rows); the script prints images/s, their ratio and
the detection yield of both on the shared images.
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


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images for the cache builder")
    parser.add_argument("--baseline-images", type=int, default=300, help="images for the baseline loop")
    parser.add_argument("--workers", type=int, default=None, help="builder processes (default: every core)")
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
    build_seconds, detected = builder(table, args.workers)
    build_rate = len(table) / build_seconds
    base_yield = np.mean([base_found[p] for p in shared])
    build_yield = np.mean([p in detected for p in shared])
    print(f"baseline (reference loop, 1 process): {len(shared)} images in {base_seconds:.1f} s = "
          f"{base_rate:.1f} images/s; face found on {base_yield:.2%}")
    print(f"cache builder ({args.workers or faces.default_workers()} workers, incl. start-up): "
          f"{len(table)} images in {build_seconds:.1f} s = {build_rate:.1f} images/s; face found on "
          f"{build_yield:.2%} of the baseline's images ({len(detected) / len(table):.2%} of all)")
    print(f"speed-up: {build_rate / base_rate:.2f}x; load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
