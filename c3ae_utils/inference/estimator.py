"""`AgeEstimator`: a C3AE model (Keras or an exported runner) and a face detector that
predict the age of every face of photos, batched into one model call."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from c3ae_utils import faces, network
from c3ae_utils.faces.tracking import StreamDetector
from c3ae_utils.inference.drawing import draw_predictions
from c3ae_utils.inference.predictions import FacePrediction, check_image, preprocess_images
from c3ae_utils.inference.tracking import CropPredictor, FaceTracker, LitePredictor
from c3ae_utils.inference.video import predict_video

logger = logging.getLogger(__name__)


class AgeEstimator:
    """Detect every face of a photo and predict its age with a C3AE model.

    `model` is a Keras C3AE model (input `crops` [n, 3, 64, 64, 3] RGB 0-255, outputs `age`
    and `distribution`; checked by `network.check_signature`, ValueError otherwise) or an
    exported runner (`TFLiteRunner`, `OnnxRunner`); `detector` is a `faces.Detector`
    (default: the process-wide `faces.default_detector()`).
    """

    def __init__(self, model: Any, detector: Any = None, name: str = "model") -> None:
        self.model = network.load_model(model) if isinstance(model, keras.Model) else model
        self.detector = detector
        self.name = name
        self._stream_predictor: CropPredictor | None = None

    @classmethod
    def from_weights(cls, spec: str | Path | None = None, detector: Any = None) -> AgeEstimator:
        """An estimator from anything `network.resolve_weights` accepts: a run name or
        folder, a `.keras` file, a reference `.h5` file, "c3ae-utkface" (the shipped model) or
        "reference-v89"/"reference-v84"; `spec=None` uses `network.DEFAULT_WEIGHTS`, the shipped
        model."""
        path = network.resolve_weights(spec)
        return cls(network.load_model(path), detector=detector, name=network.weights_label(path))

    def _get_detector(self) -> Any:
        if self.detector is None:
            self.detector = faces.default_detector()
        return self.detector

    def predict_crops(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Ages float32 [n] (years) and distributions float32 [n, 12] of crops [n, 3, 64, 64, 3]."""
        return network.predict_ages(self.model, crops)

    def predict_image(self, image: np.ndarray) -> list[FacePrediction]:
        """Every face of an RGB uint8 [height, width, 3] image, with its age, in one model call."""
        return self.predict_images([image])[0]

    def predict_images(self, images: Sequence[np.ndarray]) -> list[list[FacePrediction]]:
        """Every face of several RGB uint8 images: detection batched, one model call for all."""
        images = [check_image(image) for image in images]
        detected, crops = preprocess_images(images, self._get_detector())
        return self.predict_preprocessed(detected, crops, len(images))

    def predict_preprocessed(
        self, detected: Sequence[tuple[int, Any]], crops: np.ndarray, num_images: int
    ) -> list[list[FacePrediction]]:
        """Predictions from `preprocess_images`' output (so several models can share one
        detection pass): one list per image, in one model call."""
        outputs = self.predict_crops(crops)
        predictions: list[list[FacePrediction]] = [[] for _ in range(num_images)]
        for row, (index, face) in enumerate(detected):
            predictions[index].append(
                FacePrediction(
                    box=np.asarray(face.box, np.float32),
                    landmarks=np.asarray(face.landmarks, np.float32),
                    confidence=float(face.confidence),
                    age=float(outputs["age"][row]),
                    distribution=outputs["distribution"][row],
                )
            )
        return predictions

    def annotate(self, image: np.ndarray, predictions: Sequence[FacePrediction]) -> np.ndarray:
        """A copy of the RGB uint8 image with each face's box and predicted age drawn on it."""
        return draw_predictions(image, predictions)

    def tracker(self, **settings: Any) -> FaceTracker:
        """A new `tracking.FaceTracker` that follows faces with this estimator's detector and
        predicts them with its model (`stream_predictor`); `settings` are `FaceTracker`'s
        (`detect_interval_s`, `half_life_s`, ...)."""
        # The predictor is made on the tracker's first use (`warm_up`), not here: converting the
        # model takes seconds, and a video that cannot be opened should fail before that.
        return FaceTracker(self._predict_stream_crops, StreamDetector(self._get_detector()), **settings)

    def _predict_stream_crops(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Ages and distributions of crops [n, 3, 64, 64, 3] by `stream_predictor()`."""
        return self.stream_predictor()(crops)

    def stream_predictor(self) -> CropPredictor:
        """What trackers predict crops with: a Keras model's float32 TFLite conversion
        (`tracking.LitePredictor`: the same ages, about twice as fast on a frame's few faces;
        made once), `predict_crops` for an exported runner or where the conversion fails."""
        if self._stream_predictor is None:
            self._stream_predictor = self.predict_crops
            if isinstance(self.model, keras.Model):
                try:
                    self._stream_predictor = LitePredictor(self.model)
                except Exception as error:  # any converter failure: Keras still predicts
                    logger.warning("TFLite conversion failed (%s); videos predict with Keras.", error)
        return self._stream_predictor

    def predict_video(
        self,
        path: str | Path | int,
        output_video: str | Path | None,
        output_csv: str | Path | None,
        stride: int = 1,
        max_frames: int | None = None,
        track: bool = True,
        live: bool = False,
    ) -> list[dict[str, Any]]:
        """Predict ages on every `stride`-th frame of a video file (or a camera: `live`); see
        `video.predict_video`. `track` (the default): faces are followed from frame to frame
        by a new `tracker()`, with track IDs and smoothed ages; False detects every frame anew."""
        tracker = self.tracker() if track else None
        return predict_video(self, path, output_video, output_csv, stride, max_frames, tracker, live)
