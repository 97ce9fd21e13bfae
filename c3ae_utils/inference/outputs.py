"""The files `c3ae predict` writes besides videos: per-frame CSV tables, annotated photos and
the `predictions.json` summary, and the names of them all.

Every file is written whole or not at all (`paths.atomic_write`: a temporary file, then a
rename), and a failed write raises `OSError` (a full disk, a read-only folder), never
passes silently. `output_names` gives each input a name no other input's outputs share.
Video frames are written as they are read, by `video` (`open_writer`, just as atomic).
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from c3ae_utils import paths
from c3ae_utils.inference.predictions import FacePrediction

CSV_COLUMNS = ["frame", "time_s", "face", "x1", "y1", "x2", "y2", "confidence", "age"]
SUMMARY_NAME = "predictions.json"
# What `c3ae predict` writes per input, after its output name: photos, videos, videos' tables.
PHOTO_ENDING, VIDEO_ENDING, CSV_ENDING = "_annotated.jpg", "_annotated.mp4", "_faces.csv"
OUTPUT_ENDINGS = (PHOTO_ENDING, VIDEO_ENDING, CSV_ENDING)


def output_names(inputs: Sequence[Path], folder: Path, reserved: Iterable[str] = ()) -> list[str]:
    """One output name per input, unique (ignoring case) among them and `reserved`: the
    file's stem; `<stem>_<suffix>` where stems clash (photo.jpg, photo.png -> photo_jpg,
    photo_png); then `-2`, `-3`, ... in input order (a/photo.jpg, b/photo.jpg). A name whose
    outputs in `folder` (`OUTPUT_ENDINGS`) would overwrite one of the inputs is numbered too.
    """
    stems = Counter(path.stem.casefold() for path in inputs)
    inputs_here = {str(path.resolve()).casefold() for path in inputs}
    taken = {name.casefold() for name in reserved}
    names = []
    for path in inputs:
        wanted = path.stem if stems[path.stem.casefold()] == 1 else _with_suffix(path)
        name, number = wanted, 1
        while name.casefold() in taken or _overwrites(folder, name, inputs_here):
            number += 1
            name = f"{wanted}-{number}"
        taken.add(name.casefold())
        names.append(name)
    return names


def _with_suffix(path: Path) -> str:
    """`<stem>_<suffix without its dot>`, or the stem of a file without a suffix."""
    return f"{path.stem}_{path.suffix[1:]}" if path.suffix else path.stem


def _overwrites(folder: Path, name: str, inputs: set[str]) -> bool:
    """Whether an output of `name` in `folder` is one of the inputs (resolved, any case)."""
    return any(str((folder / f"{name}{ending}").resolve()).casefold() in inputs for ending in OUTPUT_ENDINGS)


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
    """Write the per-frame rows of `predict_video` as CSV, atomically: the header is
    `CSV_COLUMNS`, then any other column the rows carry (e.g. a tracker's), in the order
    first seen. OSError when it cannot be written."""
    path = Path(path)
    paths.ensure_dir(path.parent)
    extra = [name for name in dict.fromkeys(key for row in rows for key in row) if name not in CSV_COLUMNS]

    def write(temporary: Path) -> None:
        with temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS + extra)
            writer.writeheader()
            writer.writerows(rows)

    return _write_checked(path, write)


def write_image(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 image [height, width, 3] (e.g. an annotated photo) to `path`,
    atomically; the suffix picks the format (OpenCV). ValueError when OpenCV cannot encode
    that format, OSError when the file cannot be written (full disk, read-only folder)."""
    path = Path(path)
    encoded, data = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not encoded:
        raise ValueError(f"OpenCV cannot encode an image as {path.suffix!r} ({path}).")
    return _write_checked(path, lambda temporary: temporary.write_bytes(data.tobytes()))


def write_summary(summary: dict[str, Any], folder: Path) -> Path:
    """Write `summary` (weights, output folder, one result per input) as
    `folder/predictions.json`, atomically (strict JSON). When that fails, an earlier run's
    file is removed, so none describes outputs this run did not write; OSError says so."""
    path = folder / SUMMARY_NAME
    text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    try:
        return _write_checked(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        raise


def _write_checked(path: Path, write: Callable[[Path], object]) -> Path:
    """`paths.atomic_write(path, write)`; its OSError names `path` and the system's reason
    (the temporary file's name would mean nothing to the reader)."""
    try:
        return paths.atomic_write(path, write)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from error
