"""The per-image policy: one photo in, the crops of its usable faces (or a reason) out.

Used by the training caches (`cache.build_cache`, policy "train") and by inference (policy
"inference"), so both see exactly the same preprocessing: read, detect, select faces by
policy, align, detect again on the chip, cut the three context crops, estimate the pose.

Contract: images are RGB `uint8 [h, w, 3]` arrays or file paths; each usable face gives
crops `uint8 [3, crop_size, crop_size, 3]` (RGB, outer/middle/inner; `[3, 64, 64, 3]` by
default) and a pose in degrees. Failure reasons (`REASONS`): "unreadable" (missing, empty,
corrupt or undecodable file; the detail says which), "image too small", "no face", "second
face" (training policy: another face at least `second_face_threshold` confident), "face too
small" (box side under `min_face_size` pixels, `MIN_FACE_SIZE` by default: the training policy
drops the photo, the inference policy every such face, listing it in `skipped`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from c3ae_utils.faces.alignment import (
    ALIGN_PADDING,
    CHIP_SIZE,
    REDETECT_SIZE,
    AlignedFace,
    align_faces,
)
from c3ae_utils.faces.crops import context_crops
from c3ae_utils.faces.detection import Detector, Face, default_detector
from c3ae_utils.faces.images import (
    MIN_IMAGE_SIDE,
    REASON_TOO_SMALL_IMAGE,
    REASON_UNREADABLE,
    check_rgb,
    read_image,
)
from c3ae_utils.faces.pose import estimate_pose
from c3ae_utils.shapes import CROP_SIZE

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

# Faces whose box is narrower or shorter than this (pixels of the original image) get no age.
# The inner crop spans the box's width and is resized to 64 x 64 (`CROP_SIZE`), so at 32 px
# every face pixel already fills 2 x 2 crop pixels; smaller, the crops are mostly
# interpolation, and the training policy never shows the model such a face. Measured with
# the shipped model on 40 UTKFace photos shrunk until the face box was N px wide: the mean
# change from the full-size prediction is 1.0 y at 64 px, 2.7 y at 32, 3.7 at 24, 6.4 at 16.
MIN_FACE_SIZE = 32.0

ImageInput = np.ndarray | str | Path


@dataclass
class ProcessedFace:
    """Everything training needs from one face.

    `crops`: uint8 [3, 64, 64, 3] (outer, middle, inner; RGB); `face`: the detection in the
    original image; `aligned`: the chip and the chip face the crops were cut from;
    `yaw`, `pitch`, `roll`: degrees, from the original image's landmarks.
    """

    crops: np.ndarray
    face: Face
    aligned: AlignedFace
    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class SkippedFace:
    """A detected face the policy gave no crops: `face` in the original image, `reason`
    (one of `REASONS`) and `detail` (e.g. "5x7 px face < 32 px")."""

    face: Face
    reason: str
    detail: str


@dataclass
class ProcessResult:
    """What `process_image` made of one image: faces, or a failure `reason` (+ `detail`);
    `skipped`: faces detected but left out (inference policy: too small to read)."""

    faces: list[ProcessedFace]
    reason: str | None = None
    detail: str = ""
    skipped: list[SkippedFace] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one usable face came out."""
        return self.reason is None and bool(self.faces)


@dataclass(frozen=True)
class Settings:
    """Knobs of the preprocessing, stored in each cache's `config.json`.

    `second_face_threshold`: training policy drops a photo when another face is at least this
    confident (the reference drops photos with a second face); `min_face_size`: faces whose
    box is narrower or shorter than this many pixels (original image) are dropped (training
    policy: the photo; inference policy: the face); `padding`, `chip_size`, `redetect_size`:
    the alignment (see `alignment`); `crop_size`: side of the three crops, pixels.
    """

    policy: str = "train"
    second_face_threshold: float = 0.9
    min_face_size: float = MIN_FACE_SIZE
    padding: float = ALIGN_PADDING
    chip_size: int = CHIP_SIZE
    redetect_size: int = REDETECT_SIZE
    crop_size: int = CROP_SIZE

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"Unknown policy {self.policy!r}; choose one of {POLICIES}.")


def _decode(item: ImageInput) -> np.ndarray | ProcessResult:
    """The RGB uint8 image of an array or path, or the failed result saying why not."""
    try:
        image = check_rgb(item if isinstance(item, np.ndarray) else read_image(item))
    except ValueError as error:
        detail = getattr(error, "reason", "") or str(error)
        return ProcessResult([], REASON_UNREADABLE, detail)
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        return ProcessResult([], REASON_TOO_SMALL_IMAGE, f"{image.shape[1]}x{image.shape[0]} px")
    return image


def _too_small(face: Face, settings: Settings) -> SkippedFace | None:
    """The face as skipped ("face too small") when a box side is under `min_face_size`."""
    if min(face.width, face.height) >= settings.min_face_size:
        return None
    detail = f"{face.width:.0f}x{face.height:.0f} px face < {settings.min_face_size:.0f} px"
    return SkippedFace(face, REASON_SMALL_FACE, detail)


def _select_faces(found: list[Face], settings: Settings) -> tuple[list[Face], ProcessResult | None]:
    """Apply the policy to one image's detections: (faces to keep, the failed result or None);
    the result also lists the faces the inference policy skipped."""
    if not found:
        return [], ProcessResult([], REASON_NO_FACE)
    if settings.policy == "inference":
        verdicts = [(face, _too_small(face, settings)) for face in found]
        kept = [face for face, skip in verdicts if skip is None]
        small = [skip for _, skip in verdicts if skip is not None]
        if kept:
            return kept, (ProcessResult([], skipped=small) if small else None)
        return [], ProcessResult([], REASON_SMALL_FACE, small[0].detail, small)
    main, others = found[0], found[1:]
    strong = [face.confidence for face in others if face.confidence >= settings.second_face_threshold]
    if strong:
        return [], ProcessResult([], REASON_SECOND_FACE, f"confidence {max(strong):.3f}")
    if _too_small(main, settings) is not None:
        side = min(main.width, main.height)
        return [], ProcessResult([], REASON_SMALL_FACE, f"{side:.0f} px < {settings.min_face_size:.0f} px")
    return [main], None


def _processed_face(image: np.ndarray, face: Face, chip: AlignedFace, crop_size: int) -> ProcessedFace:
    """Crops from the aligned chip and the pose from the original landmarks of one face."""
    crops = context_crops(chip.image, chip.face, crop_size)
    yaw, pitch, roll = estimate_pose(face.landmarks, image.shape)
    return ProcessedFace(crops, face, chip, yaw, pitch, roll)


def process_images(
    images: Sequence[ImageInput],
    policy: str = "train",
    detector: Detector | None = None,
    settings: Settings | None = None,
) -> list[ProcessResult]:
    """Detect, select (policy), align, detect again and crop a batch of images.

    `images`: RGB uint8 [h, w, 3] arrays or file paths. Detection runs batched. Returns one
    result per image, in order. Never raises for a bad image: its result carries the
    failure reason instead.
    """
    settings = settings or Settings(policy=policy)
    detector = detector or default_detector()
    results: list[ProcessResult | None] = [None] * len(images)
    decoded: dict[int, np.ndarray] = {}
    for index, item in enumerate(images):
        outcome = _decode(item)
        if isinstance(outcome, ProcessResult):
            results[index] = outcome
        else:
            decoded[index] = outcome
    order = sorted(decoded)
    pending: list[tuple[int, Face]] = []
    for index, found in zip(order, detector.detect_batch([decoded[i] for i in order]), strict=True):
        kept, results[index] = _select_faces(found, settings)
        pending.extend((index, face) for face in kept)
    aligned = align_faces(
        [(decoded[i], face) for i, face in pending],
        detector,
        settings.padding,
        settings.chip_size,
        settings.redetect_size,
    )
    for (index, face), chip in zip(pending, aligned, strict=True):
        if results[index] is None:
            results[index] = ProcessResult([])
        results[index].faces.append(_processed_face(decoded[index], face, chip, settings.crop_size))
    return [result if result is not None else ProcessResult([], REASON_NO_FACE) for result in results]


def process_image(
    image: ImageInput,
    policy: str = "train",
    detector: Detector | None = None,
    settings: Settings | None = None,
) -> ProcessResult:
    """One image (RGB uint8 [h, w, 3] array or path) -> crops, faces and pose, or a reason.

    Training policy ("train"): keep the most confident face; fail with "second face" when
    another face is at least `second_face_threshold` confident and with "face too small"
    under `min_face_size` pixels. Inference policy ("inference"): keep every face of at least
    `min_face_size` pixels, list the others in `skipped` ("face too small" when none is left).
    """
    return process_images([image], policy, detector, settings)[0]
