"""The three context crops C3AE reads: outer, middle and inner squares around one face.

Contract: boxes are float32 x1, y1, x2, y2 in pixels of the image they are cut from (the
aligned chip, in the course); crops are RGB `uint8 [NUM_SCALES, size, size, 3]` (`[3, 64,
64, 3]` by default, `shapes.CROPS_SHAPE`), ordered as `shapes.SCALE_NAMES`: outer (most
context) to inner (least). Parts of a box outside the image are black.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from c3ae_utils.faces.detection import Face
from c3ae_utils.faces.images import check_rgb
from c3ae_utils.shapes import CROP_SIZE


def context_boxes(face: Face) -> np.ndarray:
    """The three context boxes of a face: float32 [3, 4] (x1, y1, x2, y2), outer to inner.

    outer: the face box grown by |w - h| on every side; middle: a square centred on the nose
    whose top edge is the box's top; inner: a square centred on the nose of side w
    (the reference implementation's geometry, StevenBanama/C3AE; notebook 02, "Build the
    three crops", draws the three boxes on a face).
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
    image = check_rgb(aligned_image)
    return np.stack([crop_box(image, box, size) for box in context_boxes(face)])
