"""faces: decoding, detection on real UTKFace / FG-NET photos, alignment, crops, pose, bad input.

Sample sizes (real mirror data): detection rates and FG-NET boxes on the shared face caches
(conftest: the quick profile's UTKFace and FG-NET photos, detected once per test run), box and
landmark details on 40 more UTKFace images; alignment and crops 80 UTKFace + 20 FG-NET images.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from c3ae_utils import datasets, faces, shapes

UTK_DETECTION_SAMPLE = 40
ALIGNMENT_SAMPLE = (80, 20)


@pytest.fixture(scope="module")
def detector() -> faces.Detector:
    return faces.Detector()


@pytest.fixture(scope="module")
def utkface(mirror) -> pd.DataFrame:
    return datasets.load_metadata("utkface")


@pytest.fixture(scope="module")
def fgnet(mirror) -> pd.DataFrame:
    return datasets.load_metadata("fgnet")


@pytest.fixture(scope="module")
def face_image(utkface) -> np.ndarray:
    """One real UTKFace face (an adult), RGB uint8 [200, 200, 3]."""
    adults = utkface[utkface["age"].between(25, 40)].sort_values("path")
    return faces.read_image(adults["path"].iloc[0])


def _fgnet_points(points_path) -> np.ndarray:
    """The 68 manual landmarks of an FG-NET photo: float [68, 2]."""
    text = open(points_path).read()
    values = text.split("{")[1].split("}")[0].split()
    return np.asarray(values, dtype=np.float64).reshape(-1, 2)


def landmark_box(points: np.ndarray, forehead: float = 0.3) -> np.ndarray:
    """The box a face detector should find, from the 68 manual points.

    The 68 points span brows to chin and jaw side to jaw side; detector boxes (MTCNN's
    included) also cover the forehead above the brows. Rule: the points' bounding box,
    with its top moved up by `forehead` x its height.
    """
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    return np.array([x1, y1 - forehead * (y2 - y1), x2, y2])


# --------------------------------------------------------------------------------------
# read_image and bad files
# --------------------------------------------------------------------------------------


def _save(image: Image.Image, path, **options) -> str:
    image.save(path, **options)
    return str(path)


def test_read_image_returns_rgb_uint8(face_image):
    assert face_image.dtype == np.uint8 and face_image.shape == (200, 200, 3)


def test_read_image_rejects_missing_empty_and_corrupt_files(tmp_path, utkface):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.jpg"
    data = open(utkface["path"].iloc[0], "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    cases = {tmp_path / "missing.jpg": "missing file", empty: "empty file",
             garbage: "corrupt or unsupported file", truncated: "corrupt or unsupported file"}
    for path, reason in cases.items():
        with pytest.raises(faces.ImageError) as caught:
            faces.read_image(path)
        assert caught.value.reason == reason
        assert isinstance(caught.value, ValueError)


def test_read_image_converts_greyscale_cmyk_alpha_and_16_bit(tmp_path, face_image):
    original = Image.fromarray(face_image)
    grey = faces.read_image(_save(original.convert("L"), tmp_path / "grey.jpg"))
    assert grey.shape == face_image.shape and grey.dtype == np.uint8
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])

    cmyk = faces.read_image(_save(original.convert("CMYK"), tmp_path / "cmyk.jpg", quality=95))
    assert cmyk.shape == face_image.shape
    assert np.abs(cmyk.astype(int) - face_image.astype(int)).mean() < 8

    rgba = np.dstack([face_image, np.full(face_image.shape[:2], 255, np.uint8)])
    rgba[:50, :50, 3] = 0  # a transparent corner
    with_alpha = faces.read_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png"))
    assert with_alpha.shape == face_image.shape
    assert (with_alpha[:50, :50] == 255).all()  # transparent -> white
    assert np.array_equal(with_alpha[100:, 100:], face_image[100:, 100:])

    deep = cv2.cvtColor(face_image, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    sixteen = faces.read_image(tmp_path / "deep.png")
    assert sixteen.dtype == np.uint8 and sixteen.shape == face_image.shape
    assert np.abs(sixteen[..., 0].astype(int) - deep // 257).max() <= 1


def test_read_image_applies_exif_orientation(tmp_path, face_image, detector):
    # Stored rotated a quarter turn counter-clockwise; EXIF orientation 6 says "rotate
    # 90 degrees clockwise to display", which gives the upright face back.
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(face_image, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(stored, tmp_path / "rotated.jpg", exif=exif, quality=95)
    assert Image.open(path).getexif()[0x0112] == 6
    upright = faces.read_image(path)
    assert upright.shape == face_image.shape
    assert np.abs(upright.astype(int) - face_image.astype(int)).mean() < 6
    found = detector.detect(upright)
    assert found and abs(found[0].eye_angle) < 15


# --------------------------------------------------------------------------------------
# Detection on real data
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def utk_detections(utkface, detector):
    sample = datasets.subsample(utkface, UTK_DETECTION_SAMPLE, seed=1)
    return detector.detect_batch([faces.read_image(p) for p in sample["path"]])


def _detection_rate(cache: faces.FaceCache) -> float:
    """Share of a cache's photos on which the detector found a face (kept or not)."""
    missed = int((cache.failures["reason"] == faces.REASON_NO_FACE).sum())
    photos = cache.table["path"].nunique() + cache.failures["path"].nunique()
    return 1 - missed / photos


def test_detection_finds_a_face_on_98_5_percent_of_utkface(utkface_cache, utk_detections):
    rate = _detection_rate(utkface_cache)
    assert rate >= 0.985, f"face found on {rate:.1%} of the UTKFace cache's photos"  # 3 misses in 200
    first = next(found[0] for found in utk_detections if found)
    assert first.box.dtype == np.float32 and first.landmarks.shape == (5, 2)
    assert all(
        [f.confidence for f in found] == sorted([f.confidence for f in found], reverse=True)
        for found in utk_detections
    )


def test_detection_finds_a_face_on_97_percent_of_fgnet(fgnet_cache):
    rate = _detection_rate(fgnet_cache)
    assert rate >= 0.97, f"face found on {rate:.1%} of the FG-NET cache's photos"


def test_fgnet_boxes_overlap_the_manual_landmarks(fgnet_cache):
    table = fgnet_cache.table
    boxes = table[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy()  # in the photo's pixels
    ious = np.array([faces.box_iou(box, landmark_box(_fgnet_points(points)))
                     for box, points in zip(boxes, table["points_path"], strict=True)])
    share = np.mean(ious >= 0.5)
    assert share >= 0.95, f"IoU >= 0.5 on {share:.1%} of {len(ious)} faces (median {np.median(ious):.2f})"


def test_landmarks_are_ordered_left_eye_right_eye_nose_mouth(utk_detections):
    for found in utk_detections[:50]:
        if not found:
            continue
        left_eye, right_eye, nose, mouth_left, mouth_right = found[0].landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def _same_faces(first: list[faces.Face], second: list[faces.Face]) -> bool:
    return len(first) == len(second) and all(
        np.array_equal(a.box, b.box) and np.array_equal(a.landmarks, b.landmarks) and a.confidence == b.confidence
        for a, b in zip(first, second, strict=True)
    )


def test_compiled_networks_find_the_same_faces_as_mtcnns_eager_calls(utkface, fgnet, detector):
    """The default detector runs MTCNN's networks as graphs; mtcnn's own eager calls must give
    the same faces bit for bit (photos of many sizes, a face-less one, a batch)."""
    photos = pd.concat([datasets.subsample(utkface, 12, seed=7), datasets.subsample(fgnet, 8, seed=7)])
    images = [faces.read_image(path) for path in photos["path"]]
    images.append(np.full((120, 160, 3), 90, np.uint8))  # no face: every stage ends empty
    eager = faces.Detector(compiled=False)
    assert type(eager.mtcnn.stages[0].model).__module__.startswith("mtcnn"), "eager: mtcnn's own network"
    assert not type(detector.mtcnn.stages[0].model).__module__.startswith("mtcnn"), "the default is compiled"
    singles = [detector.detect(image) for image in images]
    assert sum(bool(found) for found in singles) >= 19 and not singles[-1]
    for image, found in zip(images, singles, strict=True):
        assert _same_faces(found, eager.detect(image))
    batched = detector.detect_batch(images[:12])  # the 200x200 UTKFace photos: one batch
    assert all(_same_faces(a, b) for a, b in zip(batched, eager.detect_batch(images[:12]), strict=True))


# --------------------------------------------------------------------------------------
# Alignment, crops, pose
# --------------------------------------------------------------------------------------


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = math.radians(17), 1.7, np.array([12.0, -5.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    target = scale * source @ rotation.T + shift
    matrix = faces.similarity_transform(source, target)
    assert np.allclose(matrix, np.hstack([scale * rotation, shift[:, None]]), atol=1e-9)
    level = faces.eyes_level_transform(source, target)
    assert np.allclose(level, matrix, atol=1e-9)  # exact data: the same transform


@pytest.fixture(scope="module")
def processed(utkface, fgnet, detector):
    utk = datasets.subsample(utkface, ALIGNMENT_SAMPLE[0], seed=2)["path"].tolist()
    fg = datasets.subsample(fgnet, ALIGNMENT_SAMPLE[1], seed=2)["path"].tolist()
    results = faces.process_images(utk + fg, detector=detector)
    return [result for result in results if result.ok]


def test_alignment_levels_the_eyes(processed):
    assert len(processed) >= 0.95 * sum(ALIGNMENT_SAMPLE)
    transformed = [abs(r.faces[0].face.transformed(r.faces[0].aligned.matrix).eye_angle) for r in processed]
    assert max(transformed) < 1e-3  # the warp itself puts the eyes exactly level
    # Landmarks detected again on the chip carry the detector's noise: level within 3 degrees.
    redetected = np.array([abs(r.faces[0].aligned.face.eye_angle) for r in processed])
    assert np.mean(redetected <= 3.0) >= 0.95, f"eye angles: {np.sort(redetected)[-5:]}"
    assert np.median(redetected) < 1.5
    sources = [r.faces[0].aligned.source for r in processed]
    assert sources.count("redetected") >= 0.95 * len(sources)


def test_aligned_chip_puts_the_landmarks_on_the_template(processed):
    template = faces.template_landmarks()
    for result in processed[:20]:
        aligned = result.faces[0].aligned
        assert aligned.image.shape == (faces.CHIP_SIZE, faces.CHIP_SIZE, 3) and aligned.image.dtype == np.uint8
        moved = result.faces[0].face.transformed(aligned.matrix).landmarks
        assert np.abs(moved - template).max() < 0.25 * faces.CHIP_SIZE


def test_context_boxes_follow_the_reference_geometry():
    face = faces.Face([10, 20, 110, 140], 0.99, [[40, 60], [80, 60], [60, 90], [45, 115], [75, 115]])
    boxes = faces.context_boxes(face)
    assert boxes.dtype == np.float32 and boxes.shape == (3, 4)
    margin = 20  # |w - h| = |100 - 120|
    assert np.allclose(boxes[0], [10 - margin, 20 - margin, 110 + margin, 140 + margin])
    top_to_nose = 90 - 20
    assert np.allclose(boxes[1], [60 - top_to_nose, 20, 60 + top_to_nose, 90 + top_to_nose])
    assert np.allclose(boxes[2], [10, 40, 110, 140])


def test_context_crops_pad_with_black_outside_the_image():
    image = np.full((100, 100, 3), 200, np.uint8)
    face = faces.Face([-40, -40, 60, 60], 0.9, [[0, 0], [20, 0], [10, 10], [0, 30], [20, 30]])
    crops = faces.context_crops(image, face)
    assert crops.shape == shapes.CROPS_SHAPE and crops.dtype == np.uint8
    assert (crops[0, :10, :10] == 0).all() and (crops[0, -5:, -5:] == 200).all()


def _inside(inner, outer, tolerance=1e-3):
    return (inner[:2] >= outer[:2] - tolerance).all() and (inner[2:] <= outer[2:] + tolerance).all()


def test_crops_are_nested_around_the_nose(processed):
    inner_in_middle = inner_in_outer = 0
    for result in processed:
        face = result.faces[0].aligned.face
        boxes = faces.context_boxes(face)
        nose = face.landmarks[2]
        for box in boxes:  # every scale contains the nose ...
            assert box[0] <= nose[0] <= box[2] and box[1] <= nose[1] <= box[3]
        for box in boxes[1:]:  # ... and the middle and inner squares are centred on it
            assert np.allclose((box[:2] + box[2:]) / 2, nose, atol=1e-3)
            assert math.isclose(box[2] - box[0], box[3] - box[1], rel_tol=1e-4)
        assert boxes[1][1] >= boxes[0][1]  # the middle square never pokes out of the outer's top
        inner_in_middle += _inside(boxes[2], boxes[1])
        inner_in_outer += _inside(boxes[2], boxes[0])
        assert result.faces[0].crops.shape == shapes.CROPS_SHAPE
    assert inner_in_middle >= 0.95 * len(processed) and inner_in_outer >= 0.95 * len(processed)


def test_crops_zoom_in_from_outer_to_inner(processed):
    # The nose region covers more of the inner crop than of the outer one.
    sides = np.array([[b[2] - b[0] for b in faces.context_boxes(r.faces[0].aligned.face)] for r in processed])
    assert np.median(sides[:, 0]) > np.median(sides[:, 2]) and np.median(sides[:, 1]) > np.median(sides[:, 2])


def _project(rotation_degrees, image_shape=(480, 640)):
    """Project the generic 3D face rotated by (yaw, pitch, roll) into a camera: [5, 2] pixels."""
    yaw, pitch, roll = (math.radians(v) for v in rotation_degrees)
    rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    rz = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    height, width = image_shape
    focal = max(height, width)
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    rotation_vector, _ = cv2.Rodrigues(rz @ ry @ rx)
    points, _ = cv2.projectPoints(faces.FACE_MODEL_3D, rotation_vector, np.array([0.0, 0.0, 600.0]), camera, None)
    return points.reshape(5, 2)


@pytest.mark.parametrize("angles", [(0, 0, 0), (25, 0, 0), (-20, 10, 5), (0, -15, -12), (10, 5, 30)])
def test_estimate_pose_recovers_known_angles(angles):
    estimated = faces.estimate_pose(_project(angles), (480, 640))
    assert np.allclose(estimated, angles, atol=1.0), estimated


def test_estimate_pose_on_real_faces(processed, face_image, detector):
    rolls = np.array([r.faces[0].roll for r in processed])
    assert np.isfinite(rolls).all()
    found = detector.detect(face_image)[0]
    yaw, _, roll = faces.estimate_pose(found.landmarks, face_image.shape)
    mirrored = detector.detect(np.ascontiguousarray(face_image[:, ::-1]))[0]
    yaw_m, _, roll_m = faces.estimate_pose(mirrored.landmarks, face_image.shape)
    assert abs(yaw + yaw_m) < 6 and abs(roll + roll_m) < 4  # a mirror flips yaw and roll
    turned = cv2.warpAffine(face_image, cv2.getRotationMatrix2D((100, 100), -20, 1.0), (200, 200))
    found_turned = detector.detect(turned)[0]  # rotated 20 degrees clockwise
    _, _, roll_turned = faces.estimate_pose(found_turned.landmarks, turned.shape)
    assert abs(roll_turned - roll - 20) < 5


# --------------------------------------------------------------------------------------
# Bad input through process_image
# --------------------------------------------------------------------------------------


def test_tiny_images_are_upscaled_or_rejected(face_image, detector):
    tiny = cv2.resize(face_image, (8, 8), interpolation=cv2.INTER_AREA)
    assert faces.process_image(tiny, detector=detector).reason == faces.REASON_TOO_SMALL_IMAGE
    small = cv2.resize(face_image, (28, 28), interpolation=cv2.INTER_AREA)
    found = detector.detect(small)  # detected on an upscaled copy, boxes in the 28 px image
    assert found and found[0].box[2] <= 33 and found[0].box[3] <= 33
    assert faces.process_image(small, detector=detector).reason == faces.REASON_SMALL_FACE
    skipped = faces.process_image(small, policy="inference", detector=detector)  # under MIN_FACE_SIZE
    assert skipped.reason == faces.REASON_SMALL_FACE and not skipped.faces and skipped.skipped
    larger = cv2.resize(face_image, (64, 64), interpolation=cv2.INTER_AREA)
    kept = faces.process_image(larger, policy="inference", detector=detector)
    assert kept.ok and kept.faces[0].crops.shape == shapes.CROPS_SHAPE


def test_very_large_image_is_detected_on_a_downscaled_copy(face_image, detector):
    canvas = np.full((3000, 4000, 3), 90, np.uint8)
    big = cv2.resize(face_image, (1200, 1200), interpolation=cv2.INTER_CUBIC)
    canvas[1000:2200, 2000:3200] = big
    reference = detector.detect(face_image)[0]
    expected = reference.box * 6 + np.array([2000, 1000, 2000, 1000])
    found = detector.detect(canvas)
    assert found and faces.box_iou(found[0].box, expected) > 0.7
    assert np.abs(found[0].landmarks - (reference.landmarks * 6 + [2000, 1000])).max() < 60
    result = faces.process_image(canvas, detector=detector)
    assert result.ok and result.faces[0].crops.shape == shapes.CROPS_SHAPE


def test_flat_image_has_no_face(detector):
    result = faces.process_image(np.full((300, 300, 3), 128, np.uint8), detector=detector)
    assert not result.ok and result.reason == faces.REASON_NO_FACE


def test_many_faces_train_policy_drops_inference_keeps(utkface, detector):
    paths = datasets.subsample(utkface[utkface["age"].between(20, 50)], 4, seed=3)["path"]
    tiles = [faces.read_image(p) for p in paths]
    group = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])  # 400 x 400, four faces
    found = detector.detect(group)
    assert len(found) >= 3
    train = faces.process_image(group, policy="train", detector=detector)
    assert train.reason == faces.REASON_SECOND_FACE and not train.faces
    loose = faces.process_image(group, detector=detector, settings=faces.Settings(second_face_threshold=1.01))
    assert loose.ok and len(loose.faces) == 1  # the threshold is a parameter
    inference = faces.process_image(group, policy="inference", detector=detector)
    assert inference.ok and len(inference.faces) == len(found)
    centres = sorted(((f.face.box[0] + f.face.box[2]) / 2 > 200, (f.face.box[1] + f.face.box[3]) / 2 > 200)
                     for f in inference.faces)
    assert len(set(centres)) == len(centres)  # one face per tile


def test_process_images_never_stops_on_bad_input(tmp_path, face_image, detector):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    good = tmp_path / "good.jpg"
    Image.fromarray(face_image).save(good)
    buffer = io.BytesIO()
    Image.fromarray(face_image).save(buffer, format="JPEG")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(buffer.getvalue()[:300])
    results = faces.process_images([empty, broken, good, np.zeros((5, 5, 3), np.uint8)], detector=detector)
    assert [r.reason for r in results] == [
        faces.REASON_UNREADABLE, faces.REASON_UNREADABLE, None, faces.REASON_TOO_SMALL_IMAGE
    ]
    assert results[0].detail == "empty file" and results[2].ok


def test_rgb_check_and_cache_names():
    with pytest.raises(ValueError, match="RGB uint8"):
        faces.detect_faces(np.zeros((50, 50), np.uint8))
    assert faces.cache_name("utkface", None) == "utkface"
    assert faces.cache_name("utkface", 400) == "utkface-n400"
    with pytest.raises(ValueError):
        faces.Settings(policy="everything")
