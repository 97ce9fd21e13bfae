"""Alignment: warp a face into a square chip with the eyes level, then detect it again there.

Contract: images are RGB `uint8 [h, w, 3]`; an aligned chip is RGB `uint8 [CHIP_SIZE,
CHIP_SIZE, 3]` (160 x 160 pixels by default), black where it leaves the original image.
Transforms are float64 `[2, 3]` matrices mapping original pixels to chip pixels, in the form
`cv2.warpAffine` takes. Landmark arrays are `[5, 2]` (x, y) pixels in the `Face` order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from c3ae_utils.faces.detection import Detector, Face, box_iou, default_detector
from c3ae_utils.faces.images import check_rgb

CHIP_SIZE = 160  # pixels per side of an aligned chip
REDETECT_SIZE = 112  # pixels per side of the copy of the chip the face is detected again on
ALIGN_PADDING = 0.4  # margin around the template's unit face square, as a fraction of its side

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


def _rotation(angle: float) -> np.ndarray:
    """The 2 x 2 rotation matrix of `angle` radians (counter-clockwise in x-right, y-up axes)."""
    return np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


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
    rotation = _rotation(math.atan2(target_dy, target_dx) - math.atan2(dy, dx))
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
        check_rgb(image),
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


def _redetect(
    chips: list[np.ndarray], detector: Detector, output_size: int, redetect_size: int
) -> list[list[Face]]:
    """Faces on each `output_size` chip, detected on `redetect_size` copies; chip pixels."""
    if not chips:
        return []
    # The face fills the chip, so a smaller copy finds it as well, and faster.
    scale = min(1.0, redetect_size / output_size)
    small = [
        chip if scale == 1.0 else cv2.resize(chip, (redetect_size, redetect_size), interpolation=cv2.INTER_AREA)
        for chip in chips
    ]
    return [[face.mapped(scale) for face in found] for found in detector.detect_batch(small)]


def align_faces(
    items: Sequence[tuple[np.ndarray, Face]],
    detector: Detector | None = None,
    padding: float = ALIGN_PADDING,
    output_size: int = CHIP_SIZE,
    redetect_size: int = REDETECT_SIZE,
) -> list[AlignedFace]:
    """Align several (RGB uint8 image, face) pairs, detecting again on all chips in one batch.

    The second detection runs on the chips resized to `redetect_size` pixels; its box and
    landmarks are mapped back to chip pixels.
    """
    detector = detector or default_detector()
    warped = [warp_to_chip(image, face, padding, output_size) for image, face in items]
    redetected = _redetect([chip for chip, _ in warped], detector, output_size, redetect_size)
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
