"""Faces: decode, detect (MTCNN), align, crop three context scales, estimate pose, cache.

The stage between the metadata tables and training. Every image in the package is an RGB
`uint8 [height, width, 3]` array, and `read_image` is the one place that decodes a file.

    image = faces.read_image(path)                       # uint8 [h, w, 3], RGB
    found = faces.detect_faces(image)                    # list[Face], most confident first
    aligned = faces.align_face(image, found[0])          # chip with the eyes level
    crops = faces.context_crops(aligned.image, aligned.face)   # uint8 [3, 64, 64, 3]
    result = faces.process_image(path, policy="train")   # all of the above, or a failure reason

A whole metadata table becomes a cache with `build_cache(table, cache_name)` or

    python -m c3ae_utils.faces build-cache --dataset utkface [--max-images N]
        [--shard i/n] [--workers K]

Cache layout (`paths.cache_dir() / cache_name /`):

| file | content |
| --- | --- |
| `config.json` | the settings the cache was built with (a re-run must match them) |
| `table.parquet` | the input metadata table, in processing order |
| `chunks/chunk-NNNNN.npy` | uint8 `[k, 3, 64, 64, 3]`: the crops of the chunk's k usable faces |
| `chunks/chunk-NNNNN.parquet` | one row per input image of the chunk: metadata, status, reason, pose |
| `shards/shard-i-of-n.parquet` | the rows of one shard's chunks (written when a shard finishes) |
| `manifest.parquet` | every usable face, row-aligned with the concatenated crops |
| `failures.csv` | path, reason, detail for every image that gave no usable face |

Size: the crops take 3 x 64 x 64 x 3 = 36,864 bytes per face, so about 369 MB per 10,000
faces. Measured: a 400-image UTKFace cache (397 faces) is 14.9 MB on disk with its tables,
i.e. about 372 MB per 10,000 images.

Failure reasons: "unreadable" (missing, empty, corrupt or undecodable file; the detail says
which), "image too small", "no face", "second face" (training policy: another face at least
`second_face_threshold` confident), "face too small" (training policy: box side under
`min_face_size` pixels).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import logging
import math
import multiprocessing
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from c3ae_utils import paths

logger = logging.getLogger(__name__)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
CROP_SIZE = 64
CHIP_SIZE = 160
REDETECT_SIZE = 112
ALIGN_PADDING = 0.4
SCALE_NAMES = ("outer", "middle", "inner")

# Mean positions of the five landmarks in a unit face square (x right, y down), made
# left/right symmetric so that the eyes (and mouth corners) end level. The numbers are the
# widely used InsightFace/ArcFace 112 x 112 template divided by 112, averaged across sides.
FACE_TEMPLATE = np.array(
    [
        [0.3420, 0.4607],  # left eye (on the image's left)
        [0.6580, 0.4607],  # right eye
        [0.5000, 0.6405],  # nose tip
        [0.3723, 0.8240],  # mouth left
        [0.6277, 0.8240],  # mouth right
    ],
    dtype=np.float64,
)

# A generic 3D face for the pose estimate, in millimetres, x right, y down, z away from the
# camera (the nose tip is the origin and the closest point to the camera).
FACE_MODEL_3D = np.array(
    [
        [-32.0, -34.0, 28.0],  # left eye
        [32.0, -34.0, 28.0],  # right eye
        [0.0, 0.0, 0.0],  # nose tip
        [-26.0, 32.0, 22.0],  # mouth left
        [26.0, 32.0, 22.0],  # mouth right
    ],
    dtype=np.float64,
)

REASON_UNREADABLE = "unreadable"
REASON_TOO_SMALL_IMAGE = "image too small"
REASON_NO_FACE = "no face"
REASON_SECOND_FACE = "second face"
REASON_SMALL_FACE = "face too small"
REASONS = (
    REASON_UNREADABLE,
    REASON_TOO_SMALL_IMAGE,
    REASON_NO_FACE,
    REASON_SECOND_FACE,
    REASON_SMALL_FACE,
)
POLICIES = ("train", "inference")


# --------------------------------------------------------------------------------------
# Reading images
# --------------------------------------------------------------------------------------


class ImageError(ValueError):
    """A file that cannot be turned into an RGB image; `reason` says why in a few words."""

    def __init__(self, path: str | Path, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        message = f"Cannot read image {self.path}: {reason}"
        super().__init__(f"{message} ({detail})" if detail else message)


def _to_uint8_rgb(pil_image: Any) -> np.ndarray:
    """Convert any PIL mode (L, P, LA, RGBA, CMYK, I;16, I, F, ...) to RGB uint8 [h, w, 3]."""
    from PIL import Image

    mode = pil_image.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        values = np.asarray(pil_image, dtype=np.float64)
        # 16-bit (or 32-bit) greyscale: scale the range the format allows down to 0-255.
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    has_alpha = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        mode == "P" and "transparency" in pil_image.info
    )
    if has_alpha:
        # Transparent pixels become white, as an image viewer shows them.
        rgba = pil_image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        pil_image = Image.alpha_composite(background, rgba)
    rgb = pil_image.convert("RGB")  # also handles CMYK (incl. Adobe-inverted JPEG), YCbCr, 1, L
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file into RGB `uint8 [height, width, 3]`.

    Applies the EXIF orientation, expands greyscale, converts CMYK, composites alpha onto
    white and scales 16-bit images to 8 bits. Raises `ImageError` (a `ValueError`) with a
    short `reason` ("missing file", "empty file", "corrupt or unsupported file",
    "unreadable file") when the file cannot be used.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "missing file", "check the path or re-extract the dataset")
    try:
        if path.stat().st_size == 0:
            raise ImageError(path, "empty file", "zero bytes")
        with Image.open(path) as opened:
            opened.load()
            oriented = ImageOps.exif_transpose(opened)
            return _to_uint8_rgb(oriented)
    except ImageError:
        raise
    except PermissionError as error:
        raise ImageError(path, "unreadable file", str(error)) from error
    except UnidentifiedImageError as error:
        # A format Pillow does not know; OpenCV reads a few more (and applies EXIF too).
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if decoded is None or decoded.size == 0:
            raise ImageError(path, "corrupt or unsupported file", str(error)) from error
        return np.ascontiguousarray(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # Truncated or damaged data: refuse rather than train on half an image.
        raise ImageError(path, "corrupt or unsupported file", f"{type(error).__name__}: {error}") from error


# --------------------------------------------------------------------------------------
# Faces and detection
# --------------------------------------------------------------------------------------


@dataclass
class Face:
    """One detected face.

    `box`: float32 [4] = x1, y1, x2, y2 in pixels; `confidence`: detector score in [0, 1];
    `landmarks`: float32 [5, 2] of (x, y) in pixels, ordered left eye, right eye, nose,
    mouth left, mouth right ("left" = the image's left).
    """

    box: np.ndarray
    confidence: float
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        self.confidence = float(self.confidence)

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return float(self.box[3] - self.box[1])

    @property
    def eye_angle(self) -> float:
        """Angle of the line from the left to the right eye, in degrees (0 = level)."""
        dx, dy = self.landmarks[1] - self.landmarks[0]
        return float(np.degrees(np.arctan2(dy, dx)))

    def mapped(self, scale: float = 1.0, offset: Sequence[float] = (0.0, 0.0)) -> Face:
        """This face in another frame: `(point - offset) / scale` for the box and landmarks."""
        shift = np.asarray(offset, dtype=np.float64)
        box = (self.box.reshape(2, 2) - shift) / scale
        return Face(box.reshape(4), self.confidence, (self.landmarks - shift) / scale)

    def transformed(self, matrix: np.ndarray) -> Face:
        """This face under the 2x3 affine `matrix`; the box becomes the bounds of its corners."""
        x1, y1, x2, y2 = self.box.astype(np.float64)
        corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]])
        corners = corners @ matrix[:, :2].T + matrix[:, 2]
        landmarks = self.landmarks.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
        box = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
        return Face(box, self.confidence, landmarks)


def box_iou(first: Sequence[float], second: Sequence[float]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Detector:
    """A reusable MTCNN face detector (the PyPI `mtcnn` package, weights inside the wheel).

    The network is built on first use. Images go in as RGB uint8 arrays. Images whose longer
    side exceeds `max_side` pixels are detected on a downscaled copy, images whose shorter
    side is under `min_side` on an upscaled copy; boxes and landmarks are mapped back to the
    input's pixels. An image where nothing is found is retried once on a copy padded by
    `retry_padding` x its longer side with black borders and with the looser
    `retry_thresholds` (UTKFace faces fill the frame; the detector misses ~1.5% of them).
    Images of the same shape are detected together in batches of `batch_size`.

    `min_face_size` stays at the package default (20): mtcnn 1.0.0 silently returns no faces
    for values above about 24.
    """

    max_side: int = 1024
    min_side: int = 48
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)
    retry_thresholds: tuple[float, float, float] = (0.5, 0.6, 0.7)
    retry_padding: float = 0.25
    batch_size: int = 16
    _mtcnn: Any = field(default=None, init=False, repr=False)

    @property
    def mtcnn(self) -> Any:
        """The underlying `mtcnn.MTCNN` object (built on first access)."""
        if self._mtcnn is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            from mtcnn import MTCNN

            self._mtcnn = MTCNN()
        return self._mtcnn

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 [h, w, 3] image, most confident first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray], retry: bool = True) -> list[list[Face]]:
        """Faces in each image (RGB uint8 [h, w, 3]), each list most confident first."""
        prepared = [self._prepare(image) for image in images]
        results = self._detect_prepared([p[0] for p in prepared], self.thresholds)
        results = [
            [face.mapped(scale) for face in faces]
            for faces, (_, scale) in zip(results, prepared, strict=True)
        ]
        missed = [i for i, faces in enumerate(results) if not faces and prepared[i][0] is not None]
        if retry and missed:
            padded, offsets = [], []
            for i in missed:
                resized = prepared[i][0]
                pad = int(round(self.retry_padding * max(resized.shape[:2])))
                padded.append(cv2.copyMakeBorder(resized, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0))
                offsets.append(pad)
            second = self._detect_prepared(padded, self.retry_thresholds)
            for i, pad, faces in zip(missed, offsets, second, strict=True):
                # Back to the input's pixels: remove the border, then undo the resize.
                results[i] = [face.mapped(prepared[i][1], (pad, pad)) for face in faces]
        return [sorted(faces, key=lambda f: -f.confidence) for faces in results]

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray | None, float]:
        """The copy to detect on and its scale relative to `image` (None when too small)."""
        image = _check_rgb(image)
        height, width = image.shape[:2]
        if min(height, width) < 12:
            return None, 1.0
        scale = 1.0
        if max(height, width) > self.max_side:
            scale = self.max_side / max(height, width)
        elif min(height, width) < self.min_side:
            scale = self.min_side / min(height, width)
        if scale == 1.0:
            return image, 1.0
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        resized = cv2.resize(image, size, interpolation=interpolation)
        # Use the exact ratio of the integer sizes for mapping back.
        return resized, resized.shape[1] / width

    def _detect_prepared(
        self, images: Sequence[np.ndarray | None], thresholds: tuple[float, float, float]
    ) -> list[list[Face]]:
        """Run MTCNN on images grouped by shape (mtcnn batches need equal shapes)."""
        results: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            if image is not None:
                groups.setdefault(image.shape, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                rows = self._run_mtcnn([images[i] for i in batch], thresholds)
                for position, index in enumerate(batch):
                    results[index] = [_face_from_row(row) for row in rows if int(row[0]) == position]
        return results

    def _run_mtcnn(self, images: list[np.ndarray], thresholds: tuple[float, float, float]) -> np.ndarray:
        """Raw mtcnn rows [n, 16]: image index, x1, y1, x2, y2, confidence, 5 x, 5 y."""
        stacked = [image.astype(np.float32) for image in images]
        rows = self.mtcnn.detect_faces(
            stacked,
            fit_to_image=False,
            box_format="xyxy",
            output_type="numpy",
            threshold_pnet=thresholds[0],
            threshold_rnet=thresholds[1],
            threshold_onet=thresholds[2],
        )
        rows = np.asarray(rows, dtype=np.float64)
        return rows.reshape(-1, 16) if rows.size else np.empty((0, 16))


def _face_from_row(row: np.ndarray) -> Face:
    """A Face from one mtcnn numpy row (xs then ys for the landmarks)."""
    landmarks = np.stack([row[6:11], row[11:16]], axis=1)
    return Face(row[1:5], row[5], landmarks)


def _check_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 [h, w, 3] array."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"Expected an RGB uint8 [height, width, 3] image, got {image.dtype} {image.shape}; "
            "decode files with faces.read_image."
        )
    return image


_DEFAULT_DETECTOR: Detector | None = None


def default_detector() -> Detector:
    """A process-wide Detector, built on first use."""
    global _DEFAULT_DETECTOR
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = Detector()
    return _DEFAULT_DETECTOR


def detect_faces(image: np.ndarray, detector: Detector | None = None) -> list[Face]:
    """Faces in an RGB uint8 [h, w, 3] image, most confident first (empty list if none)."""
    return (detector or default_detector()).detect(image)


# --------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift) mapping source to target.

    Umeyama's closed form. `source`, `target`: [n, 2] points. Returns a float64 [2, 3] matrix
    for `cv2.warpAffine`.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mean_source, mean_target = source.mean(axis=0), target.mean(axis=0)
    centred_source, centred_target = source - mean_source, target - mean_target
    covariance = centred_target.T @ centred_source / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ reflection @ vt
    variance = (centred_source**2).sum() / len(source)
    scale = float(np.trace(np.diag(singular) @ reflection) / variance) if variance > 0 else 1.0
    shift = mean_target - scale * rotation @ mean_source
    return np.hstack([scale * rotation, shift[:, None]])


def eyes_level_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A similarity mapping source to target whose rotation makes the source's eye line level.

    The rotation undoes the angle of the line from the left eye (row 0) to the right eye
    (row 1); scale and shift are then the least-squares fit of all points. `source`,
    `target`: [5, 2] points. Returns a float64 [2, 3] matrix for `cv2.warpAffine`.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    dx, dy = source[1] - source[0]
    target_dx, target_dy = target[1] - target[0]
    angle = math.atan2(target_dy, target_dx) - math.atan2(dy, dx)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    mean_source, mean_target = source.mean(axis=0), target.mean(axis=0)
    rotated = (source - mean_source) @ rotation.T
    spread = float((rotated**2).sum())
    scale = float((rotated * (target - mean_target)).sum() / spread) if spread > 0 else 1.0
    shift = mean_target - scale * rotation @ mean_source
    return np.hstack([scale * rotation, shift[:, None]])


def template_landmarks(padding: float = ALIGN_PADDING, output_size: int = CHIP_SIZE) -> np.ndarray:
    """Where the 5 landmarks land in an aligned chip: float64 [5, 2] pixels.

    The unit face square of `FACE_TEMPLATE` is surrounded by `padding` x its side on every
    edge, and the whole padded square is scaled to `output_size` pixels.
    """
    return (FACE_TEMPLATE + padding) / (1.0 + 2.0 * padding) * output_size


@dataclass
class AlignedFace:
    """A face aligned into a square chip.

    `image`: RGB uint8 [size, size, 3]; `matrix`: float64 [2, 3] mapping original pixels to
    chip pixels; `face`: the box and landmarks in the chip, from detecting again on the
    chip (`source == "redetected"`) or, when that fails, the transformed original
    (`source == "transformed"`).
    """

    image: np.ndarray
    matrix: np.ndarray
    face: Face
    source: str


def warp_to_chip(
    image: np.ndarray, face: Face, padding: float = ALIGN_PADDING, output_size: int = CHIP_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """The aligned chip (RGB uint8 [size, size, 3], black outside the image) and its matrix."""
    matrix = eyes_level_transform(face.landmarks, template_landmarks(padding, output_size))
    chip = cv2.warpAffine(
        _check_rgb(image),
        matrix,
        (output_size, output_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return chip, matrix


def _pick_redetected(candidates: list[Face], expected: Face, min_iou: float = 0.3) -> Face | None:
    """The chip detection that overlaps the transformed face best (None if none overlaps)."""
    scored = [(box_iou(face.box, expected.box), face) for face in candidates]
    scored = [item for item in scored if item[0] >= min_iou]
    return max(scored, key=lambda item: item[0])[1] if scored else None


def align_faces(
    items: Sequence[tuple[np.ndarray, Face]],
    detector: Detector | None = None,
    padding: float = ALIGN_PADDING,
    output_size: int = CHIP_SIZE,
    redetect_size: int = REDETECT_SIZE,
) -> list[AlignedFace]:
    """Align several (image, face) pairs, detecting again on all chips in one batch.

    The second detection runs on the chips resized to `redetect_size` pixels; its box and
    landmarks are mapped back to chip pixels.
    """
    detector = detector or default_detector()
    warped = [warp_to_chip(image, face, padding, output_size) for image, face in items]
    # The face fills the chip, so a smaller copy finds it as well, in a fraction of the time.
    scale = min(1.0, redetect_size / output_size)
    small = [
        chip if scale == 1.0 else cv2.resize(chip, (redetect_size, redetect_size), interpolation=cv2.INTER_AREA)
        for chip, _ in warped
    ]
    redetected = detector.detect_batch(small) if warped else []
    redetected = [[face.mapped(scale) for face in found] for found in redetected]
    aligned = []
    for (chip, matrix), (_, face), candidates in zip(warped, items, redetected, strict=True):
        expected = face.transformed(matrix)
        chosen = _pick_redetected(candidates, expected)
        if chosen is None:
            aligned.append(AlignedFace(chip, matrix, expected, "transformed"))
        else:
            aligned.append(AlignedFace(chip, matrix, chosen, "redetected"))
    return aligned


def align_face(
    image: np.ndarray,
    face: Face,
    padding: float = ALIGN_PADDING,
    output_size: int = CHIP_SIZE,
    detector: Detector | None = None,
) -> AlignedFace:
    """Align `face` of an RGB uint8 image into an `output_size` square chip, eyes level.

    A similarity transform maps the 5 landmarks onto `template_landmarks(padding, size)`
    (0.4 padding as in the reference): its rotation levels the eyes, its scale and shift
    fit all five points in the least-squares sense (`eyes_level_transform`). The face is
    then detected again on the chip, as the reference does, to get the box and landmarks
    the crops are built from.
    """
    return align_faces([(image, face)], detector, padding, output_size)[0]


# --------------------------------------------------------------------------------------
# The three context boxes
# --------------------------------------------------------------------------------------


def context_boxes(face: Face) -> np.ndarray:
    """The three context boxes of a face: float32 [3, 4] (x1, y1, x2, y2), outer to inner.

    outer: the face box grown by |w - h| on every side; middle: a square centred on the nose
    whose top edge is the box's top; inner: a square centred on the nose of side w
    (the reference's geometry, see DESIGN.md).
    """
    x1, y1, x2, y2 = face.box.astype(np.float64)
    width, height = x2 - x1, y2 - y1
    nose_x, nose_y = face.landmarks[2].astype(np.float64)
    margin = abs(width - height)
    top_to_nose = nose_y - y1
    half = width / 2.0
    return np.array(
        [
            [x1 - margin, y1 - margin, x2 + margin, y2 + margin],
            [nose_x - top_to_nose, nose_y - top_to_nose, nose_x + top_to_nose, nose_y + top_to_nose],
            [nose_x - half, nose_y - half, nose_x + half, nose_y + half],
        ],
        dtype=np.float32,
    )


def crop_box(image: np.ndarray, box: Sequence[float], size: int = CROP_SIZE) -> np.ndarray:
    """Cut `box` (x1, y1, x2, y2, pixels) out of an RGB image, black where it leaves the
    image, and resize it to uint8 [size, size, 3]."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"Empty crop box {tuple(box)}; boxes need x2 > x1 and y2 > y1.")
    canvas = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
    left, top = max(x1, 0), max(y1, 0)
    right, bottom = min(x2, width), min(y2, height)
    if right > left and bottom > top:
        canvas[top - y1 : bottom - y1, left - x1 : right - x1] = image[top:bottom, left:right]
    interpolation = cv2.INTER_AREA if canvas.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interpolation)


def context_crops(aligned_image: np.ndarray, face: Face, size: int = CROP_SIZE) -> np.ndarray:
    """The three context crops of a face: uint8 [3, size, size, 3], RGB, outer/middle/inner."""
    image = _check_rgb(aligned_image)
    return np.stack([crop_box(image, box, size) for box in context_boxes(face)])


# --------------------------------------------------------------------------------------
# Pose
# --------------------------------------------------------------------------------------


def estimate_pose(landmarks: np.ndarray, image_shape: Sequence[int]) -> tuple[float, float, float]:
    """Head pose (yaw, pitch, roll) in degrees from 5 landmarks (float [5, 2] pixels).

    `cv2.solvePnP` fits a generic 3D face (`FACE_MODEL_3D`) with a pinhole camera of focal
    length = the image's longer side. Signs: yaw > 0 when the face turns towards the image's
    right, pitch > 0 when it tilts down, roll > 0 when it rotates clockwise in the image.
    Rough (a generic face, five points): good for filtering and grouping, not for metrology.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    height, width = int(image_shape[0]), int(image_shape[1])
    focal = float(max(height, width))
    camera = np.array([[focal, 0, width / 2.0], [0, focal, height / 2.0], [0, 0, 1]], dtype=np.float64)
    eye_distance = max(float(np.linalg.norm(points[1] - points[0])), 1.0)
    depth = focal * 64.0 / eye_distance  # the model's eyes are 64 mm apart
    nose = points[2]
    guess_t = np.array([(nose[0] - width / 2) * depth / focal, (nose[1] - height / 2) * depth / focal, depth])
    rotation_vector = np.zeros((3, 1))
    translation = guess_t.reshape(3, 1).copy()
    ok, rotation_vector, translation = cv2.solvePnP(
        FACE_MODEL_3D,
        points,
        camera,
        None,
        rotation_vector,
        translation,
        useExtrinsicGuess=True,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        return float("nan"), float("nan"), float("nan")
    rotation, _ = cv2.Rodrigues(rotation_vector)
    # rotation = Rz(roll) @ Ry(yaw) @ Rx(pitch)
    pitch = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    yaw = math.degrees(math.asin(float(np.clip(-rotation[2, 0], -1.0, 1.0))))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    return float(yaw), float(pitch), float(roll)


# --------------------------------------------------------------------------------------
# One image, start to finish
# --------------------------------------------------------------------------------------


@dataclass
class ProcessedFace:
    """Everything training needs from one face.

    `crops`: uint8 [3, 64, 64, 3] (outer, middle, inner); `face`: the detection in the
    original image; `aligned`: the chip and the chip face the crops were cut from;
    `yaw`, `pitch`, `roll`: degrees, from the original image's landmarks.
    """

    crops: np.ndarray
    face: Face
    aligned: AlignedFace
    yaw: float
    pitch: float
    roll: float


@dataclass
class ProcessResult:
    """What `process_image` made of one image: faces, or a failure `reason` (+ `detail`)."""

    faces: list[ProcessedFace]
    reason: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when at least one usable face came out."""
        return self.reason is None and bool(self.faces)


@dataclass(frozen=True)
class Settings:
    """Knobs of the preprocessing, stored in each cache's `config.json`.

    `second_face_threshold`: training policy drops a photo when another face is at least this
    confident (the reference drops photos with a second face); `min_face_size`: training
    policy drops faces whose box is narrower or shorter than this many pixels (original
    image); `padding`, `chip_size`: the alignment; `crop_size`: side of the three crops.
    """

    policy: str = "train"
    second_face_threshold: float = 0.9
    min_face_size: float = 32.0
    padding: float = ALIGN_PADDING
    chip_size: int = CHIP_SIZE
    redetect_size: int = REDETECT_SIZE
    crop_size: int = CROP_SIZE

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"Unknown policy {self.policy!r}; choose one of {POLICIES}.")


def _select_faces(found: list[Face], settings: Settings) -> tuple[list[Face], str | None, str]:
    """Apply the policy to one image's detections: (faces to keep, failure reason, detail)."""
    if not found:
        return [], REASON_NO_FACE, ""
    if settings.policy == "inference":
        return found, None, ""
    main, others = found[0], found[1:]
    strong = [face.confidence for face in others if face.confidence >= settings.second_face_threshold]
    if strong:
        return [], REASON_SECOND_FACE, f"confidence {max(strong):.3f}"
    if min(main.width, main.height) < settings.min_face_size:
        side = min(main.width, main.height)
        return [], REASON_SMALL_FACE, f"{side:.0f} px < {settings.min_face_size:.0f} px"
    return [main], None, ""


def process_images(
    images: Sequence[np.ndarray | str | Path],
    policy: str = "train",
    detector: Detector | None = None,
    settings: Settings | None = None,
) -> list[ProcessResult]:
    """Detect, select (policy), align, detect again and crop a batch of images.

    `images`: RGB uint8 [h, w, 3] arrays or file paths. Detection runs batched. Never raises
    for a bad image: its result carries the failure reason instead.
    """
    settings = settings or Settings(policy=policy)
    detector = detector or default_detector()
    results: list[ProcessResult | None] = [None] * len(images)
    decoded: dict[int, np.ndarray] = {}
    for index, item in enumerate(images):
        try:
            image = item if isinstance(item, np.ndarray) else read_image(item)
            image = _check_rgb(image)
        except ValueError as error:
            detail = getattr(error, "reason", "") or str(error)
            results[index] = ProcessResult([], REASON_UNREADABLE, detail)
            continue
        if min(image.shape[:2]) < 12:
            results[index] = ProcessResult([], REASON_TOO_SMALL_IMAGE, f"{image.shape[1]}x{image.shape[0]} px")
            continue
        decoded[index] = image
    order = sorted(decoded)
    detections = detector.detect_batch([decoded[i] for i in order])
    pending: list[tuple[int, Face]] = []
    for index, found in zip(order, detections, strict=True):
        kept, reason, detail = _select_faces(found, settings)
        if reason is not None:
            results[index] = ProcessResult([], reason, detail)
        pending.extend((index, face) for face in kept)
    aligned = align_faces(
        [(decoded[i], face) for i, face in pending],
        detector,
        settings.padding,
        settings.chip_size,
        settings.redetect_size,
    )
    for (index, face), chip in zip(pending, aligned, strict=True):
        crops = context_crops(chip.image, chip.face, settings.crop_size)
        yaw, pitch, roll = estimate_pose(face.landmarks, decoded[index].shape)
        if results[index] is None:
            results[index] = ProcessResult([])
        results[index].faces.append(ProcessedFace(crops, face, chip, yaw, pitch, roll))
    return [result if result is not None else ProcessResult([], REASON_NO_FACE) for result in results]


def process_image(
    image: np.ndarray | str | Path,
    policy: str = "train",
    detector: Detector | None = None,
    settings: Settings | None = None,
) -> ProcessResult:
    """One image (RGB uint8 array or path) -> crops, faces and pose, or a failure reason.

    Training policy ("train"): keep the most confident face; fail with "second face" when
    another face is at least `second_face_threshold` confident and with "face too small"
    under `min_face_size` pixels. Inference policy ("inference"): keep every face.
    """
    return process_images([image], policy, detector, settings)[0]


# --------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------

CACHE_FORMAT = 1
CHUNK_SIZE = 64
RESULT_COLUMNS = (
    "row",
    "face_index",
    "status",
    "reason",
    "detail",
    "confidence",
    "yaw",
    "pitch",
    "roll",
    "box_x1",
    "box_y1",
    "box_x2",
    "box_y2",
    "chip_source",
)


@dataclass
class FaceCache:
    """A loaded face cache.

    `crops`: uint8 [n, 3, 64, 64, 3] (outer, middle, inner; RGB); `table`: n rows aligned
    with `crops`: the metadata columns (path, age, gender, ..., split) plus yaw, pitch, roll
    (degrees), confidence and the face box; `failures`: path, reason, detail per image that
    gave no usable face; `path`: the cache folder.
    """

    crops: np.ndarray
    table: pd.DataFrame
    failures: pd.DataFrame
    path: Path

    def __len__(self) -> int:
        return len(self.table)


def cache_name(dataset: str, max_images: int | None = None) -> str:
    """The cache folder name of a dataset: "utkface" for all images, "utkface-n400" for 400."""
    if not dataset or "/" in dataset:
        raise ValueError(f"Invalid dataset name {dataset!r}.")
    return dataset if max_images is None else f"{dataset}-n{int(max_images)}"


def cache_path(name_or_path: str | Path) -> Path:
    """The folder of a cache given its name (under `paths.cache_dir()`) or its path."""
    candidate = Path(name_or_path)
    if candidate.is_absolute() or len(candidate.parts) > 1:
        return candidate
    return paths.cache_dir() / str(name_or_path)


def _chunk_stem(index: int) -> str:
    return f"chunk-{index:05d}"


def _atomic_write(target: Path, write: Any) -> None:
    """Write `target` through a temporary file in the same folder and `os.replace`."""
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def _write_parquet(table: pd.DataFrame, target: Path) -> None:
    _atomic_write(target, lambda tmp: table.to_parquet(tmp, index=False))


def _write_npy(array: np.ndarray, target: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    _atomic_write(target, write)


def _write_text(text: str, target: Path) -> None:
    _atomic_write(target, lambda tmp: tmp.write_text(text))


def _table_fingerprint(table: pd.DataFrame) -> str:
    """SHA-256 of the table's columns and values in order: identifies the input of a cache
    (a changed split or label makes a different cache, never a silently stale one)."""
    digest = hashlib.sha256(json.dumps([str(c) for c in table.columns]).encode())
    digest.update(pd.util.hash_pandas_object(table.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _cache_config(table: pd.DataFrame, chunk_size: int, settings: Settings, detector: Detector) -> dict:
    return {
        "format": CACHE_FORMAT,
        "num_images": int(len(table)),
        "chunk_size": int(chunk_size),
        "num_chunks": int(math.ceil(len(table) / chunk_size)),
        "table_sha256": _table_fingerprint(table),
        "settings": {key: getattr(settings, key) for key in Settings.__dataclass_fields__},
        "detector": {
            "max_side": detector.max_side,
            "min_side": detector.min_side,
            "thresholds": list(detector.thresholds),
            "retry_thresholds": list(detector.retry_thresholds),
            "retry_padding": detector.retry_padding,
            "batch_size": detector.batch_size,
        },
    }


def _result_rows(
    results: Sequence[ProcessResult], rows: Sequence[int], crop_size: int = CROP_SIZE
) -> tuple[pd.DataFrame, np.ndarray]:
    """One table row per kept face (or per failed image) and the stacked crops."""
    records, crops = [], []
    for row, result in zip(rows, results, strict=True):
        if not result.ok:
            records.append({"row": row, "face_index": -1, "status": "failed", "reason": result.reason,
                            "detail": result.detail, "chip_source": ""})
            continue
        for face_index, processed in enumerate(result.faces):
            x1, y1, x2, y2 = (float(v) for v in processed.face.box)
            records.append({
                "row": row, "face_index": face_index, "status": "ok", "reason": "", "detail": "",
                "confidence": processed.face.confidence, "yaw": processed.yaw,
                "pitch": processed.pitch, "roll": processed.roll, "box_x1": x1, "box_y1": y1,
                "box_x2": x2, "box_y2": y2, "chip_source": processed.aligned.source,
            })
            crops.append(processed.crops)
    frame = pd.DataFrame.from_records(records, columns=list(RESULT_COLUMNS))
    for column in ("row", "face_index"):
        frame[column] = frame[column].astype(np.int64)
    for column in ("confidence", "yaw", "pitch", "roll", "box_x1", "box_y1", "box_x2", "box_y2"):
        frame[column] = frame[column].astype(np.float64)
    for column in ("status", "reason", "detail", "chip_source"):
        frame[column] = frame[column].fillna("").astype(str)
    stacked = np.stack(crops) if crops else np.zeros((0, 3, crop_size, crop_size, 3), dtype=np.uint8)
    return frame, stacked


# Worker state: one Detector per process, built by the pool's initializer.
_WORKER_DETECTOR: Detector | None = None


def _init_worker(detector_options: dict) -> None:
    """Set up a pool worker: one thread per library, a built and warmed-up detector.

    Any exception here breaks the pool, and `build_cache` stops with an error (a
    `multiprocessing.Pool` would instead restart failing workers silently, forever).
    """
    global _WORKER_DETECTOR
    if os.environ.get("C3AE_TEST_FAIL_WORKER_SETUP"):  # test hook: a worker that cannot start
        raise RuntimeError("C3AE_TEST_FAIL_WORKER_SETUP is set: simulated worker set-up failure")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    cv2.setNumThreads(1)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    detector = Detector(**detector_options)
    detector.detect(np.zeros((64, 64, 3), dtype=np.uint8))  # builds and warms up the networks
    _WORKER_DETECTOR = detector


def _process_chunk(job: dict) -> tuple[int, int, int]:
    """Process one chunk in a worker and write its files; returns (chunk, images, faces)."""
    rows: list[int] = job["rows"]
    stop_after = job["stop_after"]
    images: list[str] = job["paths"]
    if stop_after is not None and rows[0] <= stop_after <= rows[-1]:
        # Test hook: simulate a crash at image `stop_after` (the images before it are done).
        cut = rows.index(stop_after)
        process_images(images[:cut], detector=_WORKER_DETECTOR, settings=job["settings"])
        raise RuntimeError(f"Injected crash at image {stop_after} (stop_after).")
    results = process_images(images, detector=_WORKER_DETECTOR, settings=job["settings"])
    frame, crops = _result_rows(results, rows, job["settings"].crop_size)
    metadata = job["metadata"].reset_index(drop=True)
    frame = metadata.iloc[frame["row"].to_numpy() - rows[0]].reset_index(drop=True).join(frame)
    folder = Path(job["folder"])
    stem = _chunk_stem(job["chunk"])
    _write_npy(crops, folder / f"{stem}.npy")
    _write_parquet(frame, folder / f"{stem}.parquet")  # written last: marks the chunk complete
    return job["chunk"], len(rows), len(crops)


def _chunk_complete(folder: Path, index: int) -> bool:
    stem = _chunk_stem(index)
    return (folder / f"{stem}.parquet").exists() and (folder / f"{stem}.npy").exists()


def _parse_shard(shard: tuple[int, int] | str | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        try:
            index, count = (int(part) for part in shard.split("/"))
        except ValueError as error:
            raise ValueError(f"Shard must look like 'i/n' (e.g. 0/4), got {shard!r}.") from error
    else:
        index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"Shard index must be in [0, {count}), got {index}.")
    return index, count


def _prepare_cache_folder(folder: Path, table: pd.DataFrame, config: dict) -> None:
    """Create the folder, or check that an existing one was started with the same input."""
    paths.ensure_dir(folder / "chunks")
    paths.ensure_dir(folder / "shards")
    config_file = folder / "config.json"
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    if config_file.exists():
        if json.loads(config_file.read_text()) != json.loads(text):
            raise ValueError(
                f"{folder} holds a cache built from a different table or with other settings. "
                "Delete the folder or choose another cache name."
            )
    else:
        _write_text(text, config_file)
    if not (folder / "table.parquet").exists():
        _write_parquet(table, folder / "table.parquet")


def _remove_stale_temporaries(folder: Path, chunks: Iterable[int]) -> None:
    """Delete temporary files an interrupted run left for these chunks."""
    for index in chunks:
        for stale in folder.glob(f"{_chunk_stem(index)}.*.tmp-*"):
            stale.unlink(missing_ok=True)


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def build_cache(
    table: pd.DataFrame,
    cache_name: str,
    shard: tuple[int, int] | str | None = None,
    workers: int | None = None,
    chunk_size: int = CHUNK_SIZE,
    settings: Settings | None = None,
    detector_options: dict | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> Path:
    """Preprocess every image of a metadata table into `paths.cache_dir() / cache_name`.

    Images are processed in chunks of `chunk_size` rows (in table order) by `workers`
    processes (default: every core), each chunk written atomically, so an interrupted
    build resumes where it stopped and ends byte-identical to an uninterrupted one.
    `shard=(i, n)` (or "i/n") processes only chunks i, i + n, i + 2n, ...: shards can run
    in separate processes or machines on copies of the same folder; whichever finishes last
    (or `finalize_cache`) merges them. `stop_after` is a test hook that crashes at that row.
    Returns the cache folder. Workers are started with "spawn": a script that calls this
    needs the usual `if __name__ == "__main__":` guard (notebooks need nothing).
    """
    if "path" not in table:
        raise ValueError("The table needs a 'path' column; build it with datasets.load_metadata.")
    if table.empty:
        raise ValueError("Cannot build a cache from an empty table.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
    settings = settings or Settings()
    detector_options = dict(detector_options or {})
    shard_index, shard_count = _parse_shard(shard)
    table = table.reset_index(drop=True)
    folder = cache_path(cache_name)
    config = _cache_config(table, chunk_size, settings, Detector(**detector_options))
    _prepare_cache_folder(folder, table, config)
    chunks_dir = folder / "chunks"
    owned = list(range(shard_index, config["num_chunks"], shard_count))
    _remove_stale_temporaries(chunks_dir, owned)
    pending = [index for index in owned if not _chunk_complete(chunks_dir, index)]

    def rows_of(index: int) -> range:
        return range(index * chunk_size, min((index + 1) * chunk_size, len(table)))

    total = sum(len(rows_of(index)) for index in owned)
    done = total - sum(len(rows_of(index)) for index in pending)
    if pending:
        workers = max(1, min(workers or default_workers(), len(pending)))
        logger.info("%s: %d of %d chunks to do with %d workers", folder.name, len(pending), len(owned), workers)
        jobs = [
            {
                "chunk": index,
                "rows": list(rows_of(index)),
                "paths": table["path"].iloc[rows_of(index).start : rows_of(index).stop].astype(str).tolist(),
                "metadata": table.iloc[rows_of(index).start : rows_of(index).stop],
                "settings": settings,
                "folder": str(chunks_dir),
                "stop_after": stop_after,
            }
            for index in pending
        ]
        _run_jobs(jobs, workers, detector_options, total, done, progress, folder.name)
    _write_shard_manifest(folder, owned, shard_index, shard_count)
    if all(_chunk_complete(chunks_dir, index) for index in range(config["num_chunks"])):
        finalize_cache(folder)
    else:
        logger.info("%s: shard %d/%d done; other shards still missing", folder.name, shard_index, shard_count)
    return folder


def _run_jobs(
    jobs: list[dict], workers: int, detector_options: dict, total: int, done: int, progress: bool, label: str
) -> None:
    """Run chunk jobs on a spawn-context process pool with a progress bar; fail loudly."""
    from concurrent.futures.process import BrokenProcessPool

    from tqdm.auto import tqdm

    context = multiprocessing.get_context("spawn")
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(detector_options,)
    )
    bar = tqdm(total=total, initial=done, unit="img", desc=f"cache {label}", disable=not progress)
    try:
        futures = [executor.submit(_process_chunk, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            _, images, _ = future.result()
            bar.update(images)
    except BrokenProcessPool as error:
        raise RuntimeError(
            "A preprocessing worker failed while starting or died (see its traceback above). "
            "Fix the cause and run again: finished chunks are kept."
        ) from error
    finally:
        bar.close()
        # On an error or Ctrl-C: drop queued chunks, let running ones finish their atomic writes.
        executor.shutdown(wait=True, cancel_futures=True)


def _read_chunk_tables(chunks_dir: Path, indices: Iterable[int]) -> pd.DataFrame:
    frames = [pd.read_parquet(chunks_dir / f"{_chunk_stem(index)}.parquet") for index in indices]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _write_shard_manifest(folder: Path, owned: list[int], shard_index: int, shard_count: int) -> None:
    chunks_dir = folder / "chunks"
    if not all(_chunk_complete(chunks_dir, index) for index in owned):
        return
    table = _read_chunk_tables(chunks_dir, owned)
    _write_parquet(table, folder / "shards" / f"shard-{shard_index}-of-{shard_count}.parquet")


def finalize_cache(name_or_path: str | Path) -> Path:
    """Merge the chunk tables of a cache into `manifest.parquet` and `failures.csv`.

    Needs every chunk (of every shard); raises `FileNotFoundError` listing missing ones.
    """
    folder = cache_path(name_or_path)
    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{folder} is not a face cache (no config.json); run build_cache first.")
    config = json.loads(config_file.read_text())
    chunks_dir = folder / "chunks"
    missing = [index for index in range(config["num_chunks"]) if not _chunk_complete(chunks_dir, index)]
    if missing:
        raise FileNotFoundError(
            f"{folder}: {len(missing)} chunks are missing (first: {missing[:5]}); run build_cache "
            "for the shards that own them."
        )
    table = _read_chunk_tables(chunks_dir, range(config["num_chunks"]))
    ok = table["status"] == "ok"
    chunk_sizes = [
        np.load(chunks_dir / f"{_chunk_stem(index)}.npy", mmap_mode="r").shape[0]
        for index in range(config["num_chunks"])
    ]
    if sum(chunk_sizes) != int(ok.sum()):
        raise ValueError(f"{folder}: chunk crops and tables disagree; delete the folder and rebuild.")
    manifest = table[ok].drop(columns=["status", "reason", "detail"]).reset_index(drop=True)
    failures = table[~ok][["path", "reason", "detail"]].reset_index(drop=True)
    _write_parquet(manifest, folder / "manifest.parquet")
    _write_text(failures.to_csv(index=False), folder / "failures.csv")
    logger.info("%s: %d faces cached, %d failures", folder.name, len(manifest), len(failures))
    return folder


def load_cache(name_or_path: str | Path) -> FaceCache:
    """Load a finished cache: crops uint8 [n, 3, 64, 64, 3], table (n rows), failures."""
    folder = cache_path(name_or_path)
    manifest_file = folder / "manifest.parquet"
    if not manifest_file.exists():
        raise FileNotFoundError(
            f"No finished face cache at {folder}. Build it with faces.build_cache (notebook 02) or "
            "`python -m c3ae_utils.faces build-cache --dataset NAME`."
        )
    config = json.loads((folder / "config.json").read_text())
    table = pd.read_parquet(manifest_file)
    failures = pd.read_csv(folder / "failures.csv", keep_default_na=False)
    chunk_files = [folder / "chunks" / f"{_chunk_stem(i)}.npy" for i in range(config["num_chunks"])]
    parts = [np.load(file, mmap_mode="r") for file in chunk_files]
    size = config["settings"]["crop_size"]
    crops = np.empty((len(table), 3, size, size, 3), dtype=np.uint8)
    start = 0
    for part in parts:
        crops[start : start + len(part)] = part
        start += len(part)
    if start != len(table):
        raise ValueError(f"{folder}: {start} crops for {len(table)} table rows; rebuild the cache.")
    return FaceCache(crops, table, failures, folder)


def yield_table(caches: dict[str, FaceCache]) -> pd.DataFrame:
    """How many images survive each step, one row per cache: counts and the final yield (%)."""
    rows = {}
    for name, cache in caches.items():
        reasons = cache.failures["reason"].value_counts()
        images = int(cache.table["path"].nunique() + len(cache.failures))
        readable = images - int(reasons.get(REASON_UNREADABLE, 0)) - int(reasons.get(REASON_TOO_SMALL_IMAGE, 0))
        found = readable - int(reasons.get(REASON_NO_FACE, 0))
        single = found - int(reasons.get(REASON_SECOND_FACE, 0))
        large = single - int(reasons.get(REASON_SMALL_FACE, 0))
        rows[name] = {
            "images": images,
            "readable": readable,
            "face found": found,
            "no second face": single,
            "face large enough": large,
            "faces cached": len(cache),
            "yield %": round(100.0 * large / images, 2) if images else float("nan"),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def metadata_table(dataset: str, seed: int = 0) -> pd.DataFrame:
    """The metadata table (with `split`) of a dataset: notebook 01's parquet if it exists,
    otherwise `datasets.load_metadata` plus `datasets.split(seed)`."""
    from c3ae_utils import datasets

    if paths.metadata_path(dataset).exists():
        return datasets.read_metadata_table(dataset)
    table = datasets.load_metadata(dataset)
    table["split"] = datasets.split(table, seed=seed)
    return table


def main(argv: list[str] | None = None) -> int:
    """`python -m c3ae_utils.faces build-cache|finalize ...` (also `c3ae cache ...`)."""
    parser = argparse.ArgumentParser(prog="c3ae cache", description="Detect, align and crop faces into a cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-cache", help="preprocess a dataset into paths.cache_dir()/NAME")
    build.add_argument("--dataset", required=True, help="utkface, fgnet, wiki or imdb")
    build.add_argument("--max-images", type=int, default=None, help="a subsample of this many images")
    build.add_argument("--seed", type=int, default=0, help="seed of the split and the subsample")
    build.add_argument("--shard", default=None, help="i/n: process only shard i of n")
    build.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    build.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="images per chunk file")
    build.add_argument("--name", default=None, help="cache name (default: faces.cache_name)")
    finalize = commands.add_parser("finalize", help="merge the shards of a cache")
    finalize.add_argument("name", help="cache name or folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "finalize":
        print(finalize_cache(args.name))
        return 0
    from c3ae_utils import datasets

    table = datasets.subsample(metadata_table(args.dataset, args.seed), args.max_images, seed=args.seed)
    name = args.name or cache_name(args.dataset, args.max_images)
    folder = build_cache(table, name, shard=args.shard, workers=args.workers, chunk_size=args.chunk_size)
    if (folder / "manifest.parquet").exists():
        cache = load_cache(folder)
        print(yield_table({name: cache}).to_string())
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
