"""Annotation: each face's box and predicted age drawn on a copy of a photo or video frame."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from c3ae_utils.inference.predictions import FacePrediction, check_image

BOX_COLOUR = (40, 220, 40)  # RGB green
LABEL_COLOUR = (0, 0, 0)  # RGB black, on the green label background


def draw_predictions(image: np.ndarray, predictions: Sequence[FacePrediction]) -> np.ndarray:
    """Boxes and ages drawn on a copy of an RGB uint8 image [height, width, 3].

    Line width and font grow with the image (scale 1 at 1000 px on the longer side).
    """
    canvas = np.ascontiguousarray(check_image(image)).copy()
    scale = max(canvas.shape[:2]) / 1000.0
    thickness = max(1, round(2 * scale))
    font_scale = max(0.5, 0.9 * scale)
    for prediction in predictions:
        _draw_one(canvas, prediction, thickness, font_scale)
    return canvas


def _draw_one(
    canvas: np.ndarray, prediction: FacePrediction, thickness: int, font_scale: float
) -> None:
    """Draw one face's box and its age label (above the box's top-left corner) in place."""
    x1, y1, x2, y2 = (int(round(float(value))) for value in prediction.box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), BOX_COLOUR, thickness)
    label = f"{prediction.age:.0f}"
    (width, height), baseline = cv2.getTextSize(
        label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness
    )
    top = max(0, y1 - height - baseline - 2 * thickness)
    cv2.rectangle(canvas, (x1, top), (x1 + width + 2 * thickness, y1), BOX_COLOUR, -1)
    cv2.putText(
        canvas,
        label,
        (x1 + thickness, y1 - baseline - thickness),
        cv2.FONT_HERSHEY_SIMPLEX,
        font_scale,
        LABEL_COLOUR,
        thickness,
        cv2.LINE_AA,
    )
