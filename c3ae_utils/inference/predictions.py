"""What a prediction is: `FacePrediction`, and the faces and crops of images to predict on.

`preprocess_images` is the one place that turns photos into model input, with exactly the
preprocessing of training (`faces.process_images`, inference policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from c3ae_utils import faces
from c3ae_utils.shapes import CROPS_SHAPE


@dataclass(frozen=True)
class FacePrediction:
    """One face of a photo and its predicted age.

    `box` float32 [4] = x1, y1, x2, y2 in pixels of the input image; `landmarks` float32 [5, 2]
    (x, y): left eye, right eye, nose, mouth left, mouth right; `confidence` of the detector;
    `age` in years (the model's `age` output); `distribution` float32 [12], the softmax over
    the age bins 0, 10, ..., 110.
    """

    box: np.ndarray
    landmarks: np.ndarray
    confidence: float
    age: float
    distribution: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats, rounded)."""
        return {
            "box": [round(float(value), 1) for value in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "confidence": round(float(self.confidence), 4),
            "age": round(float(self.age), 2),
            "distribution": [round(float(value), 4) for value in self.distribution],
        }


def check_image(image: np.ndarray) -> np.ndarray:
    """`image` as an array when it is RGB uint8 [height, width, 3]; ValueError otherwise."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            "Expected an RGB uint8 image [height, width, 3]; read files with "
            f"faces.read_image(path). Got {image.dtype} {image.shape}."
        )
    return image


def preprocess_images(
    images: Sequence[np.ndarray], detector: Any = None
) -> tuple[list[tuple[int, Any]], np.ndarray]:
    """Faces and their crops, exactly as training prepares them (`faces.process_images`).

    The inference policy keeps every face: detect, align, detect again on the aligned chip,
    cut the three context crops. Returns (image index, `faces.Face`) pairs, boxes and
    landmarks in that image's pixels, and crops uint8 [n, 3, 64, 64, 3] (RGB; outer,
    middle, inner), one row per pair.
    """
    results = faces.process_images(list(images), policy="inference", detector=detector)
    detected = [(index, item.face) for index, result in enumerate(results) for item in result.faces]
    crops = [item.crops for result in results for item in result.faces]
    if not crops:
        return [], np.zeros((0, *CROPS_SHAPE), np.uint8)
    return detected, np.stack(crops).astype(np.uint8, copy=False)
