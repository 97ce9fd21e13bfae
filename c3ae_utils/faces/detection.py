"""Face detection with MTCNN: boxes, confidences and five landmarks per face.

Contract: images go in as RGB `uint8 [h, w, 3]` (see `images`); every `Face` comes back in
the input image's pixel coordinates (x right, y down), as a float32 box `[4]` = x1, y1, x2,
y2, a confidence in [0, 1] and float32 landmarks `[5, 2]` ordered left eye, right eye,
nose, mouth left, mouth right ("left" = the image's left). Lists of faces are sorted most
confident first. An image with a side under `MIN_IMAGE_SIDE` pixels (empty ones included)
raises ValueError: MTCNN cannot look at it, and an empty list would claim it has no face
(`processing.process_images` reports such images as "image too small" before detecting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from c3ae_utils.faces.images import MIN_IMAGE_SIDE, check_rgb

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

Thresholds = tuple[float, float, float]


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
    """Intersection over union of two x1, y1, x2, y2 boxes (pixels), in [0, 1]."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _face_from_row(row: np.ndarray) -> Face:
    """A Face from one mtcnn numpy row [16] (xs then ys for the landmarks)."""
    landmarks = np.stack([row[6:11], row[11:16]], axis=1)
    return Face(row[1:5], row[5], landmarks)


class _GraphNetwork:
    """One of MTCNN's three networks, called as a compiled TensorFlow graph.

    mtcnn 1.0.0 calls its Keras networks eagerly, layer by layer, and that dispatch is most of
    a detection's time: one graph per network detects about 3x faster with bit-identical
    boxes and landmarks (tests/test_faces.py compares it with the eager networks). An empty
    batch goes to the eager network, which raises the error mtcnn reads as "no face" there.
    """

    def __init__(self, network: Any) -> None:
        import tensorflow as tf  # mtcnn has imported it already

        self.network = network
        self.graph = tf.function(network, reduce_retracing=True)  # PNet sees every pyramid size

    def __call__(self, batch: Any) -> Any:
        return self.network(batch) if batch.shape[0] == 0 else self.graph(batch)


def _build_mtcnn(compiled: bool = True) -> Any:
    """A new `mtcnn.MTCNN` (loads TensorFlow and the networks' weights); `compiled`: its three
    networks run as graphs (`_GraphNetwork`)."""
    # Lazy: mtcnn imports TensorFlow (seconds, hundreds of MB); `import c3ae_utils.faces`
    # stays light until a detector is first used.
    from mtcnn import MTCNN

    detector = MTCNN()
    if compiled:
        for stage in detector.stages:
            if getattr(stage, "_model", None) is not None:  # mtcnn 1.0.0 keeps each network there, unexposed
                stage._model = _GraphNetwork(stage._model)
    return detector


@dataclass
class Detector:
    """A reusable MTCNN face detector (the PyPI `mtcnn` package, weights inside the wheel).

    The network is built on first use. Images go in as RGB uint8 arrays. Images whose longer
    side exceeds `max_side` pixels are detected on a downscaled copy, images whose shorter
    side is under `min_side` on an upscaled copy; boxes and landmarks are mapped back to the
    input's pixels. An image where nothing is found is retried once on a copy padded by
    `retry_padding` x its longer side with black borders and with the looser
    `retry_thresholds` (UTKFace faces fill the frame, and MTCNN misses some of those).
    Images of the same shape are detected together in batches of `batch_size`.

    `min_face_size` stays at the package default (20): mtcnn 1.0.0 silently returns no faces
    for values above about 24.
    """

    max_side: int = 1024
    min_side: int = 48
    thresholds: Thresholds = (0.6, 0.7, 0.8)
    retry_thresholds: Thresholds = (0.5, 0.6, 0.7)
    retry_padding: float = 0.25
    batch_size: int = 64  # a chunk of the face cache: 64 detects with a quarter less CPU per image than 16
    compiled: bool = True  # MTCNN's networks as graphs (same faces, about 3x faster); False: mtcnn's eager calls
    _mtcnn: Any = field(default=None, init=False, repr=False)

    @property
    def mtcnn(self) -> Any:
        """The underlying `mtcnn.MTCNN` object (built on first access)."""
        if self._mtcnn is None:
            self._mtcnn = _build_mtcnn(self.compiled)
        return self._mtcnn

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one RGB uint8 [h, w, 3] image, most confident first (ValueError when a
        side is under `MIN_IMAGE_SIDE` pixels)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray], retry: bool = True) -> list[list[Face]]:
        """Faces in each image (RGB uint8 [h, w, 3]), each list most confident first.

        With `retry`, images where nothing is found are tried again padded (see the class).
        ValueError (before any detection) when an image has a side under `MIN_IMAGE_SIDE`.
        """
        prepared = [self._prepare(image) for image in images]
        results = self._detect_prepared([copy for copy, _ in prepared], self.thresholds)
        results = [
            [face.mapped(scale) for face in faces]
            for faces, (_, scale) in zip(results, prepared, strict=True)
        ]
        missed = [i for i, faces in enumerate(results) if not faces]
        if retry and missed:
            retried = self._detect_padded([prepared[i] for i in missed])
            for i, faces in zip(missed, retried, strict=True):
                results[i] = faces
        return [sorted(faces, key=lambda f: -f.confidence) for faces in results]

    def _detect_padded(self, prepared: Sequence[tuple[np.ndarray, float]]) -> list[list[Face]]:
        """Detect on black-bordered copies with the retry thresholds; faces in input pixels."""
        padded, pads = [], []
        for resized, _ in prepared:
            pad = int(round(self.retry_padding * max(resized.shape[:2])))
            padded.append(cv2.copyMakeBorder(resized, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0))
            pads.append(pad)
        found = self._detect_prepared(padded, self.retry_thresholds)
        # Back to the input's pixels: remove the border, then undo the resize.
        return [
            [face.mapped(scale, (pad, pad)) for face in faces]
            for (_, scale), pad, faces in zip(prepared, pads, found, strict=True)
        ]

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The copy to detect on and its scale relative to `image`; ValueError when too small."""
        image = check_rgb(image)
        height, width = image.shape[:2]
        if min(height, width) < MIN_IMAGE_SIDE:
            raise ValueError(
                f"Cannot detect faces in a {width}x{height} px image: MTCNN needs at least "
                f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} px (faces.MIN_IMAGE_SIDE)."
            )
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

    def _detect_prepared(self, images: Sequence[np.ndarray], thresholds: Thresholds) -> list[list[Face]]:
        """Run MTCNN on images grouped by shape (mtcnn batches need equal shapes)."""
        results: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(image.shape, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                rows = self._run_mtcnn([images[i] for i in batch], thresholds)
                for position, index in enumerate(batch):
                    results[index] = [_face_from_row(row) for row in rows if int(row[0]) == position]
        return results

    def _run_mtcnn(self, images: list[np.ndarray], thresholds: Thresholds) -> np.ndarray:
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


_DEFAULT_DETECTOR: Detector | None = None


def default_detector() -> Detector:
    """A process-wide Detector, built on first use."""
    global _DEFAULT_DETECTOR
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = Detector()
    return _DEFAULT_DETECTOR


def detect_faces(image: np.ndarray, detector: Detector | None = None) -> list[Face]:
    """Faces in an RGB uint8 [h, w, 3] image, most confident first (empty list if none;
    ValueError naming the size when a side is under `MIN_IMAGE_SIDE` pixels)."""
    return (detector or default_detector()).detect(image)
