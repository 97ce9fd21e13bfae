"""Where a face-cache image's time goes: the builder's per-image path, one stage at a time.

    python bench/profile_preprocess.py [--images 512] [--dataset utkface] [--chunk 64]

Runs the stages of `faces.process_images` (what each `build_cache` worker does per chunk) in
this one process, on chunks of real photos like the builder's, and times each stage over all
chunks: decode, first detection (batched), warp to the aligned chip, detection again on the
chips (batched), the three crops, the head pose, and writing a chunk's `.npy` and `.parquet`.
Prints milliseconds per image of wall time and of CPU time (MTCNN runs on TensorFlow's thread
pool, so one process can use more than one core) for each stage, the totals, and the
single-process images/s they imply.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from c3ae_utils import datasets, faces
from c3ae_utils.faces import alignment, crops, pose

STAGES = ("decode", "detect", "warp", "detect again", "crops", "pose", "write")


def _timed(totals: dict[str, float], stage: str, work: Callable[[], Any]) -> Any:
    """Run `work`, adding its wall time to `totals[stage]` and its CPU time (all of this process's
    threads: TensorFlow runs MTCNN on several) to `totals[stage + " cpu"]`, in seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    result = work()
    totals[stage] += time.perf_counter() - started
    totals[stage + " cpu"] += time.process_time() - cpu
    return result


def profile_chunk(paths: list[str], detector: faces.Detector, folder: Path, totals: dict[str, float]) -> int:
    """The stages of one chunk of photos; returns how many faces it kept."""
    settings = faces.Settings()
    images = _timed(totals, "decode", lambda: [faces.read_image(path) for path in paths])
    found = _timed(totals, "detect", lambda: detector.detect_batch(images))
    pairs = [(image, kept[0]) for image, faces_found in zip(images, found, strict=True)
             if (kept := faces_found[:1])]
    warped = _timed(totals, "warp", lambda: [alignment.warp_to_chip(image, face) for image, face in pairs])
    _timed(totals, "detect again", lambda: alignment._redetect(  # noqa: SLF001 (the stage itself)
        [chip for chip, _ in warped], detector, settings.chip_size, settings.redetect_size))
    chips = [faces.AlignedFace(chip, matrix, face.transformed(matrix), "transformed")
             for (chip, matrix), (_, face) in zip(warped, pairs, strict=True)]
    cut = _timed(totals, "crops", lambda: [crops.context_crops(chip.image, chip.face) for chip in chips])
    _timed(totals, "pose", lambda: [pose.estimate_pose(face.landmarks, image.shape) for image, face in pairs])

    def write() -> None:
        np.save(folder / "chunk.npy", np.stack(cut) if cut else np.zeros((0, 3, 64, 64, 3), np.uint8))
        pd.DataFrame({"path": [str(path) for path in paths]}).to_parquet(folder / "chunk.parquet")

    _timed(totals, "write", write)
    return len(pairs)


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--dataset", default="utkface", choices=["utkface", "fgnet"])
    parser.add_argument("--chunk", type=int, default=64, help="images per chunk (the builder's default)")
    return parser


def main() -> None:
    """Profile `--images` photos of `--dataset` and print the table."""
    args = build_parser().parse_args()
    table = datasets.subsample(datasets.load_metadata(args.dataset), args.images, seed=0)
    paths = table["path"].astype(str).tolist()
    detector = faces.Detector()
    detector.detect_batch([faces.read_image(paths[0])])  # load MTCNN and trace it before timing
    totals: dict[str, float] = defaultdict(float)
    kept = 0
    with tempfile.TemporaryDirectory() as folder:
        for start in range(0, len(paths), args.chunk):
            kept += profile_chunk(paths[start:start + args.chunk], detector, Path(folder), totals)
    total = sum(totals[stage] for stage in STAGES)
    total_cpu = sum(totals[stage + " cpu"] for stage in STAGES)
    per_image = 1e3 / len(paths)
    print(f"{args.dataset}: {len(paths)} photos, {kept} faces, chunks of {args.chunk}, one process")
    print(f"{'stage':14s} {'wall ms/img':>11s} {'cpu ms/img':>11s} {'share':>6s}")
    for stage in STAGES:
        print(f"{stage:14s} {per_image * totals[stage]:11.2f} {per_image * totals[stage + ' cpu']:11.2f} "
              f"{totals[stage] / total:6.1%}")
    print(f"{'total':14s} {per_image * total:11.2f} {per_image * total_cpu:11.2f}  -> "
          f"{len(paths) / total:.1f} images/s in one process")

if __name__ == "__main__":
    main()
