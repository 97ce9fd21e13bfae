"""Faces followed through video frames: a track ID per face, and its age smoothed over the track.

`FaceTracker.update(frame, time_s)` handles one frame:

1. every track is followed to this frame (`faces.tracking.StreamDetector.follow`: R-Net
   and O-Net at its last box); a track whose face is lost is put aside, and the full
   cascade looks for it around its last box (`StreamDetector.detect_around`, a square of
   twice its size); a cut (the frame's 32x18 grey thumbnail differs from the last one by
   more than `cut_threshold` grey levels on average) ends every track;
2. the whole frame is detected (`StreamDetector.detect`) on the first frame, after a cut
   and every `detect_interval_s` seconds; a detection overlapping a track (IoU at least
   `match_iou`) replaces its followed face, one overlapping the last box of a track lost
   less than `memory_s` seconds ago resumes that track (ID and averages), the others start
   new tracks, so a face entering the picture is found within `detect_interval_s`;
3. each face is aligned (`StreamDetector.align`) and cut into the three context crops, and
   all faces of the frame are predicted in one model call;
4. each track's distribution is averaged exponentially over time (weight halving every
   `half_life_s` seconds), and so is its age: C3AE's age head is linear in the
   distribution, so the smoothed age is the head's reading of the smoothed distribution.

Track IDs start at 1 and are never reused within one tracker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from c3ae_utils import faces
from c3ae_utils.faces.stream_networks import LiteNetwork
from c3ae_utils.faces.tracking import StreamDetector
from c3ae_utils.inference.predictions import FacePrediction, check_image
from c3ae_utils.shapes import CROPS_SHAPE

THUMBNAIL_SIZE = (32, 18)  # (width, height) of the grey thumbnails that tell cuts
CropPredictor = Callable[[np.ndarray], dict[str, np.ndarray]]


class LitePredictor:
    """A Keras C3AE model converted to float32 TFLite, as `FaceTracker` predicts crops.

    The same ages (within 1e-5 years) in about half of Keras' time for the few faces of a
    frame (shipped model, two faces: 5.0 against 9.6 ms; bench/README.md, "Video"); the
    conversion takes 1.5-3 s, once. A call maps crops
    [n, 3, 64, 64, 3] (uint8 or float32, RGB 0-255) to {"age": float32 [n], "distribution":
    float32 [n, bins]}, like `network.predict_ages`.
    """

    def __init__(self, model: Any) -> None:
        outputs = model(np.zeros((1, *CROPS_SHAPE), np.float32), training=False)
        widths = {key: int(np.shape(value)[-1]) for key, value in outputs.items()}
        self.network = LiteNetwork(model, CROPS_SHAPE, (widths["age"], widths["distribution"]))

    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        age, distribution = self.network(np.asarray(crops, np.float32))
        return {"age": age[:, 0], "distribution": distribution}


@dataclass(frozen=True)
class TrackedPrediction(FacePrediction):
    """A `FacePrediction` on a track: `age` and `distribution` are smoothed over the track,
    `age_raw` (years) is this frame's own prediction, `track` the track's ID (1, 2, ...)."""

    track: int = 0
    age_raw: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain numbers, rounded): `FacePrediction`'s, plus track and raw age."""
        return {**super().to_dict(), "track": self.track, "age_raw": round(float(self.age_raw), 2)}


@dataclass
class Track:
    """One face followed through frames: its latest `face` (frame pixels) and its smoothed
    `distribution` float32 [12] and `age` (years), last updated at `time_s` seconds."""

    track_id: int
    face: faces.Face
    distribution: np.ndarray | None = None
    age: float = math.nan
    time_s: float | None = None

    def smooth(self, age: float, distribution: np.ndarray, time_s: float, half_life_s: float) -> None:
        """Fold this frame's prediction into the averages: the new one weighs
        1 - 0.5 ** (seconds since the last / `half_life_s`); the first is taken as it is."""
        if self.distribution is None or self.time_s is None or half_life_s <= 0:
            weight = 1.0
        else:
            weight = 1.0 - 0.5 ** (max(0.0, time_s - self.time_s) / half_life_s)
        previous = distribution if self.distribution is None else self.distribution
        self.distribution = (previous + weight * (distribution - previous)).astype(np.float32)
        self.age = age if math.isnan(self.age) else self.age + weight * (age - self.age)
        self.time_s = time_s


@dataclass
class FaceTracker:
    """Follows the faces of consecutive frames, predicting and smoothing their ages.

    `predict_crops`: crops uint8 [n, 3, 64, 64, 3] -> {"age": [n], "distribution": [n, 12]}
    (`AgeEstimator.predict_crops`); `detector`: the `faces.tracking.StreamDetector` (its
    `min_face_size`, thresholds and follower settings); `detect_interval_s`: seconds between
    full detections; `half_life_s`: seconds over which a past prediction's weight halves;
    `match_iou`: overlap at which a detection is a tracked face; `memory_s`: seconds during
    which a lost track can be resumed; `cut_threshold`: mean grey
    level difference of consecutive thumbnails that makes a cut (scene changes in this
    package's demo clips: 26-30; fast camera moves: up to 13).
    """

    predict_crops: CropPredictor
    detector: StreamDetector = field(default_factory=StreamDetector)
    detect_interval_s: float = 0.4
    half_life_s: float = 0.5
    match_iou: float = 0.3
    memory_s: float = 1.0
    cut_threshold: float = 20.0
    tracks: list[Track] = field(default_factory=list, init=False)
    lost: list[Track] = field(default_factory=list, init=False)
    _next_id: int = field(default=1, init=False)
    _last_detection_s: float | None = field(default=None, init=False)
    _thumbnail: np.ndarray | None = field(default=None, init=False, repr=False)

    def warm_up(self, shape: tuple[int, ...]) -> None:
        """Build and compile what frames of `shape` (height, width, 3) need (MTCNN, its
        networks for streams, the pyramid for that size, the age predictor), so that the
        first frames of a camera are not held up for seconds (it would drop the next ones)."""
        self.detector.detect(np.zeros(shape, np.uint8))
        self.predict_crops(np.zeros((1, *CROPS_SHAPE), np.uint8))

    def update(self, frame: np.ndarray, time_s: float) -> list[TrackedPrediction]:
        """The tracked faces of an RGB uint8 [h, w, 3] `frame` shown at `time_s` seconds
        (increasing from call to call), in track order (oldest track first)."""
        frame = check_image(frame)
        cut = self._cut(frame)
        if cut:
            self.tracks, self.lost = [], []
        lost = self._follow(frame)
        if cut or self._detection_due(time_s):
            self._match(self.detector.detect(frame), time_s)
            self._last_detection_s = time_s
        elif lost:
            self._match(self.detector.detect_around(frame, [track.face for track in lost]), time_s)
        self._drop_duplicates()
        return self._predict(frame, time_s)

    def _cut(self, frame: np.ndarray) -> bool:
        """Whether `frame` starts a new shot: its thumbnail far from the last frame's."""
        thumbnail = cv2.resize(
            cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), THUMBNAIL_SIZE, interpolation=cv2.INTER_AREA
        ).astype(np.float32)
        previous, self._thumbnail = self._thumbnail, thumbnail
        return previous is not None and float(np.abs(thumbnail - previous).mean()) > self.cut_threshold

    def _follow(self, frame: np.ndarray) -> list[Track]:
        """Move every track to its face in `frame`; the tracks whose face is lost go to `lost`
        (and are returned)."""
        followed = self.detector.follow(frame, [track.face for track in self.tracks])
        kept, lost = [], []
        for track, face in zip(self.tracks, followed, strict=True):
            if face is None:
                lost.append(track)
            else:
                track.face = face
                kept.append(track)
        self.tracks = kept
        self.lost.extend(lost)
        return lost

    def _detection_due(self, time_s: float) -> bool:
        """Whether the schedule detects the whole frame: the first frame, then every
        `detect_interval_s` seconds."""
        if self._last_detection_s is None:
            return True
        return time_s - self._last_detection_s >= self.detect_interval_s - 1e-9

    def _match(self, found: Sequence[faces.Face], time_s: float) -> None:
        """Detections take the place of the tracks they overlap, then resume recently lost
        tracks they overlap; the rest start new tracks."""
        self.lost = [track for track in self.lost if time_s - (track.time_s or 0.0) <= self.memory_s]
        taken: set[int] = set()
        for track, index in self._pairs(self.tracks, found, taken):
            track.face = found[index]
        for track, index in self._pairs(self.lost, found, taken):
            track.face = found[index]
            self.lost.remove(track)
            self.tracks.append(track)
        for index, face in enumerate(found):
            if index not in taken:
                self.tracks.append(Track(self._next_id, face))
                self._next_id += 1
        self.tracks.sort(key=lambda track: track.track_id)

    def _pairs(
        self, tracks: Sequence[Track], found: Sequence[faces.Face], taken: set[int]
    ) -> list[tuple[Track, int]]:
        """Tracks paired greedily with the detections not yet `taken` (indices into `found`,
        added to `taken`), the best overlap (IoU) first, down to `match_iou`."""
        scored = sorted(
            ((faces.box_iou(track.face.box, face.box), t, f)
             for t, track in enumerate(tracks) for f, face in enumerate(found) if f not in taken),
            key=lambda item: -item[0],
        )
        pairs, paired = [], set()
        for overlap, t, f in scored:
            if overlap >= self.match_iou and t not in paired and f not in taken:
                pairs.append((tracks[t], f))
                paired.add(t)
                taken.add(f)
        return pairs

    def _drop_duplicates(self) -> None:
        """End the younger of two tracks that follow the same face (boxes overlapping by more
        than half)."""
        kept: list[Track] = []
        for track in self.tracks:  # oldest first
            if all(faces.box_iou(track.face.box, other.face.box) <= 0.5 for other in kept):
                kept.append(track)
        self.tracks = kept

    def _predict(self, frame: np.ndarray, time_s: float) -> list[TrackedPrediction]:
        """Align, crop and predict every tracked face in one model call; smooth each track."""
        if not self.tracks:
            return []
        aligned = self.detector.align(frame, [track.face for track in self.tracks])
        crops = np.stack([faces.context_crops(chip.image, chip.face) for chip in aligned])
        outputs = self.predict_crops(crops.reshape(-1, *CROPS_SHAPE))
        predictions = []
        for row, track in enumerate(self.tracks):
            raw_age = float(outputs["age"][row])
            track.smooth(raw_age, outputs["distribution"][row], time_s, self.half_life_s)
            predictions.append(
                TrackedPrediction(
                    box=np.asarray(track.face.box, np.float32),
                    landmarks=np.asarray(track.face.landmarks, np.float32),
                    confidence=float(track.face.confidence),
                    age=float(track.age),
                    distribution=track.distribution,
                    track=track.track_id,
                    age_raw=raw_age,
                )
            )
        return predictions
