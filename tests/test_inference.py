"""Prediction on real photos and a real video: the API and the `c3ae predict` command line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from c3ae_utils import faces, inference, network

DEMO = "demo"
GROUP_PHOTO = "timesler_facenet-pytorch/multiface.jpg"  # six people
TWO_PEOPLE = "ageitgey_face_recognition/two_people.jpg"
SHORT_CLIP = "ageitgey_face_recognition/short_hamilton_clip.mp4"  # 640x360, 275 frames
DEMO_PATHS = {"two_people": TWO_PEOPLE, "multiface": GROUP_PHOTO}


class CountingModel:
    """The real Keras model, counting how often it is called."""

    def __init__(self, model) -> None:
        self.model = model
        self.calls: list[int] = []

    def predict_on_batch(self, crops: np.ndarray):
        self.calls.append(len(crops))
        return self.model.predict_on_batch(crops)


@pytest.fixture(scope="module")
def reference_h5(mirror: Path) -> Path:
    return mirror / "reference_c3ae" / "c3ae_imdb_v89.h5"


@pytest.fixture(scope="module")
def model(reference_h5: Path):
    return network.load_reference_h5(reference_h5)


@pytest.fixture(scope="module")
def demo(mirror: Path) -> Path:
    return mirror / DEMO


@pytest.fixture(scope="module")
def group_photo(demo: Path) -> np.ndarray:
    return faces.read_image(demo / GROUP_PHOTO)


@pytest.fixture(scope="module")
def group_predictions(model, group_photo: np.ndarray):
    counting = CountingModel(model)
    predictions = inference.AgeEstimator(counting).predict_image(group_photo)
    return predictions, counting.calls


def test_every_face_of_the_group_photo_in_one_model_call(group_photo, group_predictions) -> None:
    predictions, calls = group_predictions
    assert len(predictions) >= 5  # six people; allow one miss
    # one call; network.predict_ages pads the batch to the next power of two (few traced shapes)
    assert calls == [1 << (len(predictions) - 1).bit_length()]
    height, width = group_photo.shape[:2]
    for prediction in predictions:
        x1, y1, x2, y2 = prediction.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert prediction.landmarks.shape == (5, 2)
        assert prediction.distribution.shape == (12,)
        assert prediction.distribution.sum() == pytest.approx(1.0, abs=1e-4)
        assert 10 < prediction.age < 70  # adults in their 20s-30s
        assert 0.5 < prediction.confidence <= 1.0
    json.dumps([prediction.to_dict() for prediction in predictions])


def test_prediction_uses_the_training_preprocessing(model, group_photo, group_predictions) -> None:
    predictions, _ = group_predictions
    result = faces.process_image(group_photo, policy="inference")
    crops = np.stack([item.crops for item in result.faces])
    expected = network.predict_ages(model, crops)["age"]
    assert len(result.faces) == len(predictions)
    np.testing.assert_allclose([p.age for p in predictions], expected, atol=1e-4)
    np.testing.assert_allclose(
        [p.box for p in predictions], [item.face.box for item in result.faces], atol=1e-3
    )


def test_a_photo_without_faces_gives_no_predictions_and_no_model_call(model) -> None:
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    image = np.stack([gradient, gradient[::-1], np.full_like(gradient, 90)], axis=-1)
    counting = CountingModel(model)
    assert inference.AgeEstimator(counting).predict_image(image) == []
    assert counting.calls == []


def test_predict_images_batches_several_photos(model, demo, group_predictions) -> None:
    images = [faces.read_image(demo / TWO_PEOPLE), faces.read_image(demo / GROUP_PHOTO)]
    counting = CountingModel(model)
    per_image = inference.AgeEstimator(counting).predict_images(images)
    assert len(per_image[0]) == 2
    assert len(per_image[1]) == len(group_predictions[0])
    assert counting.calls == [len(per_image[0]) + len(per_image[1])]


def test_annotate_draws_boxes_on_a_copy(model, group_photo, group_predictions) -> None:
    predictions, _ = group_predictions
    before = group_photo.copy()
    annotated = inference.AgeEstimator(model).annotate(group_photo, predictions)
    np.testing.assert_array_equal(group_photo, before)
    assert annotated.shape == group_photo.shape and annotated.dtype == np.uint8
    x1, y1, x2, y2 = (int(round(float(v))) for v in predictions[0].box)
    assert (annotated[y1 + 3 : y2 - 3, x2] != group_photo[y1 + 3 : y2 - 3, x2]).any()
    untouched = np.ones(group_photo.shape[:2], bool)
    for prediction in predictions:
        x1, y1, x2, y2 = (int(round(float(v))) for v in prediction.box)
        untouched[max(0, y1 - 60) : y2 + 5, max(0, x1 - 5) : x2 + 60] = False
    np.testing.assert_array_equal(annotated[untouched], group_photo[untouched])


def test_images_must_be_rgb_uint8(model) -> None:
    estimator = inference.AgeEstimator(model)
    with pytest.raises(ValueError, match="RGB uint8"):
        estimator.predict_image(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        estimator.predict_image(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[n, 3, 64, 64, 3\]"):
        estimator.predict_crops(np.zeros((2, 64, 64, 3), np.uint8))


def test_from_weights_accepts_runs_keras_files_and_reference_h5(
    model, reference_h5, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path))
    run_folder = tmp_path / "runs" / "utkface-focal-test"
    run_folder.mkdir(parents=True)
    model.save(run_folder / "best.keras")
    crops = np.random.default_rng(0).integers(0, 256, (4, 3, 64, 64, 3), dtype=np.uint8)
    expected = network.predict_ages(model, crops)["age"]
    for spec in ("utkface-focal-test", run_folder, run_folder / "best.keras", reference_h5):
        estimator = inference.AgeEstimator.from_weights(spec)
        np.testing.assert_allclose(estimator.predict_crops(crops)["age"], expected, atol=1e-4)
    assert inference.AgeEstimator.from_weights("utkface-focal-test").name == "utkface-focal-test"
    # the reference weights by name: fetched (from the mirror) to the same bytes as the path
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path / "raw"))
    by_name = inference.AgeEstimator.from_weights("reference-v89")
    assert by_name.name == reference_h5.stem
    np.testing.assert_array_equal(by_name.predict_crops(crops)["age"],
                                  inference.AgeEstimator.from_weights(reference_h5).predict_crops(crops)["age"])


def test_bad_weights_say_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path))
    (tmp_path / "runs" / "unfinished").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="runs"):
        network.resolve_weights("no-such-run")
    with pytest.raises(FileNotFoundError, match="best.keras"):
        network.resolve_weights("unfinished")
    text_file = tmp_path / "weights.txt"
    text_file.write_text("not weights")
    with pytest.raises(ValueError, match=".keras or .h5"):
        network.resolve_weights(text_file)


def test_predict_video_writes_an_annotated_video_and_a_csv(model, demo, tmp_path) -> None:
    output_video, output_csv = tmp_path / "clip.mp4", tmp_path / "clip.csv"
    rows = inference.AgeEstimator(model).predict_video(
        demo / SHORT_CLIP, output_video, output_csv, stride=20, max_frames=41
    )
    assert rows and {row["frame"] for row in rows} <= {0, 20, 40}
    with output_csv.open() as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == [*inference.CSV_COLUMNS, "track", "age_raw", "age_smoothed"]  # tracking, the default, adds its columns
    assert len(table) == len(rows)
    assert all(0 < float(row["age"]) < 100 for row in table)
    assert float(table[-1]["time_s"]) == pytest.approx(int(table[-1]["frame"]) / 29.97, abs=1e-2)
    written = cv2.VideoCapture(str(output_video))
    assert written.isOpened()
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 41
    ok, frame = written.read()
    assert ok and frame.shape == (360, 640, 3)
    written.release()


def test_video_errors(model, tmp_path) -> None:
    estimator = inference.AgeEstimator(model)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not a video")
    with pytest.raises(ValueError):
        estimator.predict_video(fake, None, None)
    with pytest.raises(FileNotFoundError):
        estimator.predict_video(tmp_path / "missing.mp4", None, None)
    with pytest.raises(ValueError, match="stride"):
        estimator.predict_video(fake, None, None, stride=0)


def test_missing_camera_gives_a_clear_message(reference_h5, tmp_path, capsys) -> None:
    code = inference.main(
        ["--camera", "99", "--weights", str(reference_h5), "--output", str(tmp_path)]
    )
    assert code == 1
    assert "No camera found at index 99" in capsys.readouterr().err


def _run_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ, C3AE_ARTIFACTS_DIR=str(tmp_path / "artifacts"))
    environment["C3AE_DATA_DIR"] = str(tmp_path / "raw")
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


def test_cli_on_real_photos_and_video_with_the_default_weights(demo, tmp_path) -> None:
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    output = tmp_path / "out"
    inputs = [demo / TWO_PEOPLE, demo / GROUP_PHOTO, not_an_image, tmp_path / "missing.jpg"]
    args = ["c3ae_utils.cli", "predict", *map(str, inputs), str(demo / SHORT_CLIP)]
    args += ["--output", str(output), "--json", "--stride", "30", "--max-frames", "61"]
    completed = _run_cli(args, tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "using the course's model c3ae-utkface" in completed.stderr  # default weights are announced
    assert "--weights reference-v89" in completed.stderr  # with the way back to the reference's
    assert "missing.jpg: file not found" in completed.stderr
    assert "notes.jpg: not a readable image" in completed.stderr
    summary = json.loads(completed.stdout)
    assert summary == json.loads((output / "predictions.json").read_text())
    assert summary["weights"] == "c3ae_utkface"  # the shipped model (models/), no training, no --weights
    results = {Path(result["input"]).name: result for result in summary["results"]}
    assert results["two_people.jpg"]["num_faces"] == 2
    assert results["multiface.jpg"]["num_faces"] >= 5
    assert results["notes.jpg"]["error"] == "not an image"
    assert results["missing.jpg"]["error"] == "file not found"
    for name in ("two_people", "multiface"):
        annotated = cv2.imread(str(output / f"{name}_annotated.jpg"))
        assert (
            annotated is not None
            and annotated.shape == cv2.imread(str(demo / DEMO_PATHS[name])).shape
        )
    assert all(0 < face["age"] < 100 for face in results["two_people.jpg"]["faces"])
    video = results["short_hamilton_clip.mp4"]
    with (output / "short_hamilton_clip_faces.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == video["num_faces"] > 0
    assert {int(row["frame"]) for row in rows} <= {0, 30, 60}
    assert (output / "short_hamilton_clip_annotated.mp4").stat().st_size > 10_000


def test_cli_fails_only_when_nothing_could_be_done(reference_h5, tmp_path, monkeypatch, capsys) -> None:
    # In this process (the subprocess path is the test above): `c3ae predict` is inference.main.
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 200, np.uint8))
    inputs = [str(tmp_path / "missing.jpg"), str(blank)]
    assert inference.main([*inputs, "--weights", str(reference_h5), "--output", str(tmp_path)]) == 1
    messages = capsys.readouterr().err
    assert "missing.jpg: file not found" in messages and "blank.png: no face found" in messages
    assert inference.main([str(blank), "--weights", "no-such-run"]) == 1
    assert "No weights at 'no-such-run'" in capsys.readouterr().err


def test_one_weights_loader_for_names_runs_and_files(model, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path / "raw"))
    folder = tmp_path / "artifacts" / "runs" / "a-run"
    folder.mkdir(parents=True)
    model.save(folder / "last.keras")  # an unfinished run: no best.keras yet
    assert network.resolve_weights("a-run") == folder / "last.keras"

    class RunLike:  # what training.Run offers: the run folder
        path = folder

    assert network.resolve_weights(RunLike()) == folder / "last.keras"
    assert network.model_label(RunLike()) == "a-run" and network.model_label(model) == model.name
    v84 = network.resolve_weights("reference-v84")
    assert v84.name == network.REFERENCE_WEIGHTS["reference-v84"] and v84.parent == tmp_path / "raw" / "reference"
    assert network.load_model("reference-v84").count_params() == 48_633  # no SE
    assert network.load_model(model) is model
    with pytest.raises(ValueError, match="'reference-v84', 'reference-v89'"):
        network.reference_weights_path("reference-v90")
