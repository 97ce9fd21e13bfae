"""Faces in a stream of video frames: MTCNN on whole frames now and then, and R-Net and O-Net
alone to follow each face from one frame to the next.

`StreamDetector` runs the `Detector`'s three networks itself (`stream_networks`: P-Net as one
TensorFlow graph over the pyramid, R-Net and O-Net in TFLite), each call batched over the
faces of a frame:

- `detect(frame)`: the full cascade (P-Net pyramid, R-Net, O-Net). The pyramid starts at the
  smallest face that matters (`PYRAMID_MARGIN` x `min_face_size`, and never finer than the
  per-frame path looks) and stops where the frame would shrink under P-Net's 12 px window
  (mtcnn 1.0.0's own pyramid keeps a fixed number of levels, which is why `Detector` cannot
  raise its `min_face_size`); the first level is resized from the uint8 frame by OpenCV, and
  R-Net and O-Net read their patches from the frame itself, so a 1920x1080 frame is never
  normalised whole. The pyramid is traced once per frame size.
- `detect_around(frame, faces)`: the full cascade in a square around each face's last box,
  resampled to `REGION_SIZE` pixels: where to look for a face the follower just lost.
- `follow(frame, faces)`: R-Net and O-Net alone on the square around each face's last box
  (in place of P-Net's proposals), which re-centres the box on a face that moved by a
  fraction of its size; a face whose scores fall too low is lost (None).
- `align(frame, faces)`: `alignment.align_faces` with O-Net alone on the chip instead of
  the full cascade ("detect again" at the box the transform predicts), one O-Net call for all.

Contract: frames are RGB `uint8 [h, w, 3]`; every `Face` is in that frame's pixels (x1, y1,
x2, y2 box, five landmarks), as `detection` gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from c3ae_utils.faces.alignment import (
    ALIGN_PADDING,
    CHIP_SIZE,
    REDETECT_SIZE,
    AlignedFace,
    warp_to_chip,
)
from c3ae_utils.faces.detection import Detector, Face, Thresholds, default_detector
from c3ae_utils.faces.images import check_rgb
from c3ae_utils.faces.processing import MIN_FACE_SIZE
from c3ae_utils.faces.stream_networks import StreamNetworks, stream_networks

PNET_WINDOW = 12  # pixels: P-Net looks at 12x12 windows with a stride of 2
PYRAMID_FACTOR = 0.709  # each pyramid level is this times the one before (MTCNN's factor)
# The pyramid starts at this fraction of `min_face_size`: O-Net's box of a face P-Net found in
# a 12 px window at one level can come out smaller (on the demo clip, starting at 24 px finds
# the faces of 32 px and more that 20 px does, with 15% less CPU).
PYRAMID_MARGIN = 0.75
PHOTO_MIN_FACE = 20  # pixels: the smallest face `Detector` looks for, on its copy of at most max_side
REGION_SIZE = 112  # pixels: the side of the square a lost face is looked for in (`detect_around`)


@dataclass(frozen=True)
class Proposals:
    """Candidate faces of one frame: float64 `boxes` [n, 4] (x1, y1, x2, y2, frame pixels),
    `scores` [n] in [0, 1] and `landmarks` [n, 5, 2] (x, y; zeros before O-Net)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Proposals:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, keep: np.ndarray) -> Proposals:
        """The proposals at indices (or mask) `keep`."""
        return Proposals(self.boxes[keep], self.scores[keep], self.landmarks[keep])

    def faces(self) -> list[Face]:
        """One `Face` per proposal, most confident first."""
        order = np.argsort(-self.scores, kind="stable")
        return [Face(self.boxes[i], self.scores[i], self.landmarks[i]) for i in order]


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """Boxes [n, 4] made square around their centres, side = the longer side (MTCNN's rule)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None] / 2
    return np.hstack([centres - half, centres + half])


def _square_region(frame: np.ndarray, origin: np.ndarray, side: float) -> np.ndarray:
    """The square of `side` pixels from `origin` (x, y) of an RGB frame, black outside it,
    resized to uint8 [REGION_SIZE, REGION_SIZE, 3]."""
    height, width = frame.shape[:2]
    x1, y1 = (int(round(value)) for value in origin)
    x2, y2 = x1 + max(1, int(round(side))), y1 + max(1, int(round(side)))
    inside = frame[max(0, y1) : max(0, min(height, y2)), max(0, x1) : max(0, min(width, x2))]
    square = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
    square[max(0, -y1) : max(0, -y1) + inside.shape[0], max(0, -x1) : max(0, -x1) + inside.shape[1]] = inside
    interpolation = cv2.INTER_AREA if square.shape[0] > REGION_SIZE else cv2.INTER_LINEAR
    return cv2.resize(square, (REGION_SIZE, REGION_SIZE), interpolation=interpolation)


def pyramid_scales(height: int, width: int, first: float) -> list[float]:
    """Scales of the P-Net pyramid: `first` (12 / the smallest face in pixels), each next
    one `PYRAMID_FACTOR` times smaller, down to a 12 px short side."""
    scales, scale = [], first
    while min(height, width) * scale >= PNET_WINDOW:
        scales.append(scale)
        scale *= PYRAMID_FACTOR
    return scales


def _nms(proposals: Proposals, threshold: float, method: str = "union") -> Proposals:
    """Non-maximum suppression (mtcnn's), most confident first."""
    from mtcnn.utils.bboxes import iou, nms

    if len(proposals) < 2:
        return proposals
    order = np.argsort(-proposals.scores, kind="stable")
    proposals = proposals.take(order)
    return proposals.take(nms(iou(list(proposals.boxes), method=method), threshold))


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes [n, 4] moved by the networks' offsets [n, 4] (fractions of the box's side + 1)."""
    sizes = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
    return boxes + offsets * np.tile(sizes, 2)


@dataclass
class StreamDetector:
    """MTCNN for video frames: full detection, a cheap follower, and alignment (see the module).

    `detector`: whose networks to run (default `default_detector()`, the one photos use);
    `min_face_size`: pixels, the shortest box side kept (`processing.MIN_FACE_SIZE`, under
    which photos' faces are skipped as too small to read: `detect` leaves such faces out and
    `follow` loses them); `thresholds`: P-, R- and O-Net scores; `follow_threshold`:
    the O-Net score under which a followed face is lost.
    """

    detector: Detector = field(default_factory=default_detector)
    min_face_size: float = MIN_FACE_SIZE
    thresholds: Thresholds = (0.6, 0.7, 0.8)
    follow_threshold: float = 0.2
    padding: float = ALIGN_PADDING
    chip_size: int = CHIP_SIZE
    redetect_size: int = REDETECT_SIZE

    @property
    def networks(self) -> StreamNetworks:
        """The detector's networks compiled for streams (`stream_networks`; built on first use)."""
        return stream_networks(self.detector)

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Every face of at least `min_face_size` px in an RGB uint8 frame, most confident first."""
        return [face for face in self._cascade(check_rgb(frame)).faces() if self._large_enough(face)]

    def detect_around(self, frame: np.ndarray, faces: Sequence[Face], margin: float = 0.5) -> list[Face]:
        """Faces (the full cascade, as `detect`) in a square around each of `faces`: its box's
        longer side grown by `margin` times on every side, resampled to `REGION_SIZE` pixels
        (so the pyramid is compiled once for every such region). Frame pixels."""
        frame = check_rgb(frame)
        found = []
        for face in faces:
            side = (1 + 2 * margin) * max(face.width, face.height)
            origin = (face.box[:2] + face.box[2:]) / 2 - side / 2
            scale = REGION_SIZE / side  # region pixels per frame pixel
            region = _square_region(frame, origin, side)
            found += [found_face.mapped(scale, -origin * scale) for found_face in self._cascade(region).faces()]
        return [face for face in found if self._large_enough(face)]

    def _cascade(self, image: np.ndarray) -> Proposals:
        """P-Net over the pyramid, then R-Net and O-Net: the faces of any size in `image`."""
        proposals = self._pnet(image)
        if len(proposals):
            proposals = self._refine(image, proposals, 1, self.thresholds[1])
        if len(proposals):
            proposals = self._refine(image, proposals, 2, self.thresholds[2])
        return proposals

    def _large_enough(self, face: Face) -> bool:
        """Whether both sides of the face's box are at least `min_face_size` pixels."""
        return min(face.width, face.height) >= self.min_face_size

    def follow(self, frame: np.ndarray, faces: Sequence[Face]) -> list[Face | None]:
        """Each face found again near its last box in `frame`, or None where it is lost.

        The last box, made square, takes the place of a P-Net proposal: R-Net scores and moves
        it, O-Net places the box and landmarks. A face is lost when R-Net's score is under the
        R-Net threshold or O-Net's under `follow_threshold` (lower than the detection's: O-Net
        scores a face it has just found anywhere from 0.2 to 1 from frame to frame), and when
        its box shrinks under `min_face_size`.
        """
        if not faces:
            return []
        frame = check_rgb(frame)
        boxes = square_boxes(np.stack([face.box for face in faces]))
        boxes, rnet_scores = self._rnet(frame, boxes)
        found = self._onet(frame[None], boxes, np.zeros(len(boxes), int))
        kept = (rnet_scores >= self.thresholds[1]) & (found.scores >= self.follow_threshold)
        followed = [Face(*row) if keep else None for keep, *row in zip(
            kept, found.boxes, found.scores, found.landmarks, strict=True)]
        return [face if face is not None and self._large_enough(face) else None for face in followed]

    def align(self, frame: np.ndarray, faces: Sequence[Face]) -> list[AlignedFace]:
        """Each face warped into its chip (eyes level, `alignment.warp_to_chip`) and found again
        there by one O-Net pass at the box the transform predicts (on the `redetect_size`
        copy, as `alignment.align_faces` detects); where O-Net's score is under the last
        threshold, the transformed face (source "transformed")."""
        if not faces:
            return []
        frame = check_rgb(frame)
        warped = [warp_to_chip(frame, face, self.padding, self.chip_size) for face in faces]
        scale = min(1.0, self.redetect_size / self.chip_size)
        small = np.stack([
            chip if scale == 1.0
            else cv2.resize(chip, (self.redetect_size,) * 2, interpolation=cv2.INTER_AREA)
            for chip, _ in warped
        ])
        expected = [face.transformed(matrix) for face, (_, matrix) in zip(faces, warped, strict=True)]
        boxes = np.stack([face.box for face in expected]).astype(np.float64) * scale
        found = self._onet(small, boxes, np.arange(len(faces)))
        aligned = []
        for i, ((chip, matrix), face) in enumerate(zip(warped, expected, strict=True)):
            if found.scores[i] >= self.thresholds[2]:
                chip_face = Face(found.boxes[i], found.scores[i], found.landmarks[i]).mapped(scale)
                aligned.append(AlignedFace(chip, matrix, chip_face, "redetected"))
            else:
                aligned.append(AlignedFace(chip, matrix, face, "transformed"))
        return aligned

    def _pnet(self, frame: np.ndarray) -> Proposals:
        """P-Net's proposals over the pyramid, merged (NMS) and made square."""
        from mtcnn.utils.bboxes import generate_bounding_box

        height, width = frame.shape[:2]
        scales = pyramid_scales(height, width, self._first_scale(height, width))
        if not scales:
            return Proposals.empty()
        sizes = tuple(self._level_size(frame.shape, scale) for scale in scales)
        # The first level from the uint8 frame (OpenCV, area averaging), the others from it.
        first = cv2.resize(frame, sizes[0][::-1], interpolation=cv2.INTER_AREA)
        found = []
        for size, (regression, classes) in zip(sizes, self.networks.pyramid(first[None], sizes), strict=True):
            rows = generate_bounding_box(regression, classes, self.thresholds[0])
            if len(rows) == 0:
                continue
            # Level pixels -> frame pixels, by the exact ratio of the integer level size.
            boxes = rows[:, 1:5] * (width / size[1])
            found.append(_nms(Proposals(boxes, rows[:, 5], np.zeros((len(rows), 5, 2))), 0.5))
        if not found:
            return Proposals.empty()
        merged = Proposals(*(np.concatenate(parts) for parts in zip(*(
            (p.boxes, p.scores, p.landmarks) for p in found), strict=True)))
        merged = _nms(merged, 0.7)
        return Proposals(square_boxes(merged.boxes), merged.scores, merged.landmarks)

    def _first_scale(self, height: int, width: int) -> float:
        """The pyramid's first scale: P-Net's window on a face of `PYRAMID_MARGIN` x
        `min_face_size` pixels, but never finer than the per-frame path looks (`Detector`:
        20 px faces on a copy of at most `max_side` pixels; a 1920x1080 frame would cost 2.4
        times as much otherwise, for faces that path never finds)."""
        finest = PNET_WINDOW / (PYRAMID_MARGIN * self.min_face_size)
        photo = PNET_WINDOW / PHOTO_MIN_FACE * min(1.0, self.detector.max_side / max(height, width))
        return min(finest, photo)

    @staticmethod
    def _level_size(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
        """(height, width) of the pyramid level at `scale` of a frame of `shape`."""
        return max(1, int(shape[0] * scale)), max(1, int(shape[1] * scale))

    def _refine(self, frame: np.ndarray, proposals: Proposals, stage: int, threshold: float) -> Proposals:
        """R-Net (stage 1) or O-Net (stage 2) on the proposals: scored, moved, filtered, NMS."""
        if stage == 1:
            boxes, scores = self._rnet(frame, proposals.boxes)
            kept = Proposals(boxes, scores, proposals.landmarks).take(scores > threshold)
            kept = _nms(kept, 0.7)
            return Proposals(square_boxes(kept.boxes), kept.scores, kept.landmarks)
        found = self._onet(frame[None], proposals.boxes, np.zeros(len(proposals), int))
        return _nms(found.take(found.scores > threshold), 0.7, method="min")

    def _rnet(self, frame: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """R-Net on square `boxes` [n, 4]: (moved boxes [n, 4], scores [n])."""
        outputs = self.networks.rnet(frame[None], boxes, np.zeros(len(boxes), int))
        offsets, scores = (np.asarray(value, np.float64) for value in outputs)
        return _regress(boxes, offsets), scores[:, -1]

    def _onet(self, images: np.ndarray, boxes: np.ndarray, indices: np.ndarray) -> Proposals:
        """O-Net on `boxes` [n, 4] (made square) of `images` [b, h, w, 3] (image `indices` [n]):
        moved boxes, scores and landmarks, one row per box."""
        boxes = square_boxes(boxes)
        outputs = self.networks.onet(images, boxes, indices)
        offsets, points, scores = (np.asarray(value, np.float64) for value in outputs)
        sizes = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
        # mtcnn's landmark rule: xs then ys, as fractions of the box's side + 1, from its corner - 1.
        landmarks = np.stack([points[:, :5], points[:, 5:]], axis=2) * sizes[:, None, :]
        landmarks += boxes[:, None, :2] - 1
        return Proposals(_regress(boxes, offsets), scores[:, -1], landmarks)
