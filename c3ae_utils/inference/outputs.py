"""The files `c3ae predict` writes besides videos: per-frame CSV tables, annotated photos and
the `predictions.json` summary.

Video frames are written as they are read, by `video`; everything else written to the output
folder goes through this module.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from c3ae_utils import paths
from c3ae_utils.inference.predictions import FacePrediction

CSV_COLUMNS = ["frame", "time_s", "face", "x1", "y1", "x2", "y2", "confidence", "age"]
SUMMARY_NAME = "predictions.json"


def frame_rows(
    frame: int, seconds: float, predictions: Sequence[FacePrediction]
) -> list[dict[str, Any]]:
    """One CSV row (`CSV_COLUMNS`) per face of video frame `frame`, shown at `seconds`."""
    return [
        {
            "frame": frame,
            "time_s": round(seconds, 3),
            "face": face,
            **{
                name: round(float(v), 1)
                for name, v in zip(("x1", "y1", "x2", "y2"), p.box, strict=True)
            },
            "confidence": round(p.confidence, 4),
            "age": round(p.age, 2),
        }
        for face, p in enumerate(predictions)
    ]


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the per-frame rows of `predict_video` as CSV (header `CSV_COLUMNS`)."""
    path = Path(path)
    paths.ensure_dir(path.parent)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_image(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 image [height, width, 3] (e.g. an annotated photo) to `path`;
    the suffix picks the format (OpenCV)."""
    path = Path(path)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def write_summary(summary: dict[str, Any], folder: Path) -> Path:
    """Write `summary` (weights, output folder, one result per input) as `folder/predictions.json`."""
    path = folder / SUMMARY_NAME
    paths.write_text_atomic(path, json.dumps(summary, indent=2))
    return path
