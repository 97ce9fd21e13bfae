"""Faces tracked through videos (issue 28): stable track IDs on the real demo clip, smoothed and
raw ages in the CSV, the camera path on a synthetic stream, and a face entering mid-stream
found within half a second. The synthetic streams are made here, from a real photo of the
data mirror pasted onto a generated background; nothing is committed."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from c3ae_utils import faces, inference
from c3ae_utils.inference.command import camera_source
from c3ae_utils.inference.video import TRACK_COLUMNS

CLIP = "demo/ageitgey_face_recognition/short_hamilton_clip.mp4"  # 640x360, 29.97 frames/s
PHOTO = "demo/ageitgey_face_recognition/two_people.jpg"
GROUP_SHOT = 212  # the clip's last shot: four people, from frame 212 (a cut) to the end
STREAM_FPS = 25.0
STREAM_SIZE = (240, 320)  # height, width of the synthetic stream
PATCH_SIDE, PATCH_TOP, PATCH_REST = 112, 60, 180  # the pasted photo: side, top and final left edge
ENTERS = (4, 12)  # the photo slides in from the right over these frames, then stays


@pytest.fixture(scope="module")
def estimator() -> inference.AgeEstimator:
    return inference.AgeEstimator.from_weights(None)  # the shipped model


def read_frames(path: Path, start: int, count: int) -> list[np.ndarray]:
    """`count` RGB frames of a video from frame `start`."""
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(count)]
    capture.release()
    return frames


@pytest.fixture(scope="module")
def face_patch(mirror: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real face: RGB uint8 [112, 112, 3], the first face of the demo photo in a square of
    1.5 times its longer side (edges repeated where the photo ends), and its box in the
    square's pixels (about 57 x 75)."""
    photo = faces.read_image(mirror / PHOTO)
    box = faces.detect_faces(photo)[0].box
    half = 0.75 * max(box[2] - box[0], box[3] - box[1])
    pad = int(np.ceil(half))
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    x, y = (box[:2] + box[2:]) / 2 + pad - half
    square = padded[int(y) : int(y + 2 * half), int(x) : int(x + 2 * half)]
    scale = PATCH_SIDE / square.shape[0]
    face_box = (box + pad - np.array([int(x), int(y), int(x), int(y)])) * scale
    return cv2.resize(square, (PATCH_SIDE, PATCH_SIDE), interpolation=cv2.INTER_AREA), face_box


def synthetic_stream(patch: np.ndarray, count: int) -> tuple[list[np.ndarray], list[int]]:
    """Frames RGB uint8 [240, 320, 3] of a still textured background into which `patch`
    slides from the right over the frames `ENTERS`, then rests at `PATCH_REST`; and the
    patch's left edge in each frame (pixels; the frame's width before it enters)."""
    height, width = STREAM_SIZE
    rng = np.random.default_rng(0)
    ramp = np.linspace(60, 160, width, dtype=np.float32)[None, :, None]
    background = np.clip(ramp + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    first, last = ENTERS
    frames, lefts = [], []
    for index in range(count):
        progress = min(1.0, max(0.0, (index - first + 1) / (last - first + 1)))
        left = int(round(width - progress * (width - PATCH_REST)))
        frame = background.copy()
        visible = min(PATCH_SIDE, width - left)
        if visible > 0:
            frame[PATCH_TOP : PATCH_TOP + PATCH_SIDE, left : left + visible] = patch[:, :visible]
        frames.append(frame)
        lefts.append(left)
    return frames, lefts


def write_video(frames: list[np.ndarray], path: Path) -> Path:
    """The frames as an mp4v video at `STREAM_FPS`."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), STREAM_FPS, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_track_ids_are_stable_on_the_real_clip(estimator, mirror) -> None:
    # The clip's first shot: one face large enough for an age (the singer; the pianist's,
    # about 24 px, is skipped), one track from the first frame on.
    tracker = estimator.tracker()
    first_shot = [tracker.update(frame, index / 29.97) for index, frame in enumerate(read_frames(mirror / CLIP, 0, 19))]
    assert [[p.track for p in found] for found in first_shot] == [[1]] * 19
    # Its last shot: four people; each keeps one ID while the others move and talk.
    tracker = estimator.tracker()
    frames = read_frames(mirror / CLIP, GROUP_SHOT, 40)
    found = [tracker.update(frame, index / 29.97) for index, frame in enumerate(frames)]
    assert all([p.track for p in faces_of_frame] == [1, 2, 3, 4] for faces_of_frame in found)
    for track in range(4):
        boxes = np.stack([faces_of_frame[track].box for faces_of_frame in found])
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        assert steps.max() < 0.25 * (boxes[:, 2] - boxes[:, 0]).mean()  # the same face throughout


def test_the_csv_has_raw_and_smoothed_ages_per_track(estimator, mirror, tmp_path) -> None:
    output_csv = tmp_path / "clip.csv"
    rows = estimator.predict_video(mirror / CLIP, None, output_csv, max_frames=19)  # the first shot
    table = read_rows(output_csv)
    assert len(table) == len(rows) > 0
    assert list(table[0]) == [*inference.CSV_COLUMNS, *TRACK_COLUMNS]  # all earlier columns kept
    assert TRACK_COLUMNS == ["track", "age_raw", "age_smoothed"]
    assert all(row["age"] == row["age_smoothed"] for row in table)  # the age shown is the smoothed one
    raw = np.array([float(row["age_raw"]) for row in table])
    smoothed = np.array([float(row["age_smoothed"]) for row in table])
    assert [int(row["track"]) for row in table] == [1] * 19  # the singer, in every frame
    # The smoothed age moves less from frame to frame than the model's own answers.
    assert np.abs(np.diff(smoothed)).max() < 0.5 * np.abs(np.diff(raw)).max()
    assert smoothed[0] == raw[0]  # a track starts at its first prediction


def test_a_face_entering_mid_stream_is_found_within_half_a_second(estimator, face_patch) -> None:
    patch, face_box = face_patch
    frames, lefts = synthetic_stream(patch, 40)
    tracker = estimator.tracker()
    tracked = [tracker.update(frame, index / STREAM_FPS) for index, frame in enumerate(frames)]
    assert tracked[0] == []  # nothing before the face enters
    # The first frame showing the whole face: it slides in between two scheduled detections.
    in_view = next(index for index, left in enumerate(lefts) if left + face_box[2] <= STREAM_SIZE[1])
    assert in_view % round(tracker.detect_interval_s * STREAM_FPS) != 0
    found = next(index for index, faces_of_frame in enumerate(tracked) if faces_of_frame)
    assert found <= in_view + 0.5 * STREAM_FPS
    assert all([p.track for p in faces_of_frame] == [1] for faces_of_frame in tracked[found:])
    resting = face_box + np.array([PATCH_REST, PATCH_TOP, PATCH_REST, PATCH_TOP])
    assert faces.box_iou(tracked[-1][0].box, resting) > 0.5


def test_the_camera_path_on_a_synthetic_stream(face_patch, tmp_path, capsys) -> None:
    # A file given as the camera plays at its frame rate: the face is found in time there too.
    patch, face_box = face_patch
    frames, lefts = synthetic_stream(patch, 40)
    stream = write_video(frames, tmp_path / "stream.mp4")
    output = tmp_path / "out"
    assert camera_source("0") == 0 and camera_source(str(stream)) == str(stream)
    assert inference.main(["--camera", str(stream), "--output", str(output)]) == 0, capsys.readouterr().err
    annotated = output / "camera_stream_annotated.mp4"
    table = read_rows(output / "camera_stream_faces.csv")
    assert table and {row["track"] for row in table} == {"1"}
    assert all(float(row["age_smoothed"]) == float(row["age"]) for row in table)
    times = [float(row["time_s"]) for row in table]
    assert times == sorted(times)  # a live source is timed by the clock
    in_view = next(index for index, left in enumerate(lefts) if left + face_box[2] <= STREAM_SIZE[1])
    assert int(table[0]["frame"]) <= in_view + 0.5 * STREAM_FPS
    assert len(table) == 40 - int(table[0]["frame"])  # then in every frame
    capture = cv2.VideoCapture(str(annotated))
    written = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(40)]
    capture.release()
    # The frame rate is written in the top-left corner from the second frame on (white text).
    corner = (slice(0, 24), slice(0, 90))
    assert (written[10][corner] > 200).all(axis=-1).sum() > 20
    assert (frames[10][corner] > 200).all(axis=-1).sum() == 0
