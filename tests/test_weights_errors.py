"""Bad weights and bad `c3ae predict` input fail early, with one clear line (issue 15).

Weights are checked to be a C3AE model when they are loaded (`network.load_model`), before
any image is read; reference `.h5` files are checked against their published SHA-256 on every
use; the package's custom Keras objects are registered by importing any module that handles
Keras models. Every probe but one runs in this process (a subprocess costs seconds of
TensorFlow start-up): `inference.main` returns the exit code under the error contract.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from c3ae_utils import faces, inference, network, training

TWO_PEOPLE = Path("demo") / "ageitgey_face_recognition" / "two_people.jpg"
REFERENCE = Path("reference_c3ae") / "c3ae_imdb_v89.h5"


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Weights files that are not C3AE models: name -> file."""
    folder = tmp_path_factory.mktemp("bad_weights")
    files = {
        "text": folder / "notes.h5",
        "random": folder / "noise.keras",
        "foreign": folder / "digits.keras",
        "five_bins": folder / "five_bins.keras",
    }
    files["text"].write_text("these are not weights\n")
    files["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    image = keras.Input((28, 28, 1))
    digits = keras.layers.Dense(10, name="digit")(keras.layers.Flatten()(image))
    keras.Model(image, digits).save(files["foreign"])
    network.build_c3ae(num_bins=5).save(files["five_bins"])
    return files


FOUND = {  # what each message must say was found instead of a C3AE model
    "text": "expected an HDF5 file, found a file of 22 bytes starting b'these are not",
    "random": "expected a .keras zip archive, found a file of 4096 bytes",
    "foreign": "found one input [None, 28, 28, 1] and outputs digit [None, 10]",
    "five_bins": "found one input [None, 3, 64, 64, 3] and outputs age [None, 1], distribution [None, 5]",
}


@pytest.mark.parametrize("kind", sorted(FOUND))
def test_load_model_names_the_file_and_what_it_holds(bad_weights, kind) -> None:
    with pytest.raises(ValueError) as caught:
        network.load_model(bad_weights[kind])
    message = str(caught.value)
    assert str(bad_weights[kind]) in message and FOUND[kind] in message
    assert "Give C3AE weights" in message  # what to do
    if kind in ("foreign", "five_bins"):
        assert "expected one input [None, 3, 64, 64, 3] and outputs age [None, 1], distribution [None, 12]" in message


@pytest.mark.parametrize("kind", sorted(FOUND))
def test_predict_with_bad_weights_stops_before_any_face_and_writes_nothing(
    bad_weights, kind, mirror, tmp_path, monkeypatch, capsys
) -> None:
    def no_detection(*args, **kwargs):
        raise AssertionError("faces were detected with bad weights")

    monkeypatch.setattr(faces, "process_images", no_detection)
    output = tmp_path / "out"
    argv = [str(mirror / TWO_PEOPLE), "--weights", str(bad_weights[kind]), "--output", str(output)]
    assert inference.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("c3ae predict: error: ")
    assert str(bad_weights[kind]) in lines[0] and FOUND[kind] in lines[0]
    assert not output.exists()


def test_an_estimator_refuses_a_foreign_keras_model(bad_weights) -> None:
    foreign = keras.saving.load_model(bad_weights["foreign"])
    with pytest.raises(ValueError, match="is not a C3AE model"):
        inference.AgeEstimator(foreign)


def test_a_keras3_h5_of_our_model_is_not_read_as_the_reference(tmp_path) -> None:
    # Read by the reference loader, it would get a BGR flip and no white norm: wrong ages.
    keras.utils.set_random_seed(5)
    model = network.build_c3ae()
    path = tmp_path / "ours.h5"
    model.save(path)
    crops = np.random.default_rng(1).integers(0, 256, (2, 3, 64, 64, 3), dtype=np.uint8)
    expected = network.predict_ages(model, crops)["age"]
    np.testing.assert_allclose(network.predict_ages(network.load_model(path), crops)["age"], expected, atol=1e-4)
    with pytest.raises(ValueError, match="saved by Keras 3"):
        network.load_reference_h5(path)


def test_a_changed_reference_file_is_refused(mirror, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path / "raw"))
    path = network.reference_weights_path("reference-v89")  # fetched from the mirror, checked
    assert path.read_bytes() == (mirror / REFERENCE).read_bytes()
    changed = path.read_bytes() + b"\0"
    path.unlink()  # a new file: never write through a link into the shared mirror
    path.write_bytes(changed)
    with pytest.raises(ValueError, match="changed after it was fetched") as caught:
        network.reference_weights_path("reference-v89")
    assert str(path) in str(caught.value) and "c3ae data fetch reference" in str(caught.value)
    assert inference.main([str(mirror / TWO_PEOPLE), "--weights", "reference-v89", "--output", str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("c3ae predict: error: ") and str(path) in lines[0]
    assert not (tmp_path / "out").exists()


def test_predict_options_are_checked_before_anything_runs(mirror, tmp_path, capsys) -> None:
    photo = str(mirror / TWO_PEOPLE)
    with pytest.raises(SystemExit) as caught:
        inference.main([photo, "--max-frames", "0"])
    assert caught.value.code == 2 and "--max-frames must be at least 1" in capsys.readouterr().err
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    for output in (taken, taken / "inside"):
        assert inference.main([photo, "--output", str(output)]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"{taken} is a file, not a folder" in lines[0]
    assert taken.read_text() == "keep me"
    with pytest.raises(ValueError, match="max_frames must be at least 1"):
        inference.predict_video(None, tmp_path / "clip.mp4", None, None, max_frames=0)


def test_a_folder_stands_for_its_photos_and_videos(mirror, tmp_path, capsys) -> None:
    photos, empty = tmp_path / "photos", tmp_path / "empty"
    photos.mkdir()
    empty.mkdir()
    shutil.copy(mirror / TWO_PEOPLE, photos / "Two.JPG")
    (photos / "notes.txt").write_text("not a photo")
    (photos / ".hidden.jpg").write_text("not a photo either")
    assert inference.expand_inputs([photos, empty]) == [photos / "Two.JPG", empty]
    output = tmp_path / "out"
    argv = [str(photos), str(empty), "--weights", str(mirror / REFERENCE), "--output", str(output)]
    assert inference.main(argv) == 0
    assert f"{empty}: a folder without photos or videos, skipped." in capsys.readouterr().err
    results = json.loads((output / "predictions.json").read_text())["results"]
    assert [result["input"] for result in results] == [str(photos / "Two.JPG"), str(empty)]
    assert results[0]["num_faces"] == 2 and results[1]["error"] == "no photos or videos in folder"


@pytest.mark.parametrize("shape", [(0, 0, 3), (5, 5, 3), (0, 40, 3), (11, 300, 3)])
def test_detection_refuses_images_too_small_to_look_at(shape) -> None:
    height, width = shape[:2]
    with pytest.raises(ValueError, match=rf"{width}x{height} px image.*at least 12x12"):
        faces.detect_faces(np.zeros(shape, np.uint8), detector=faces.Detector())
    # the per-image policy still reports them as a reason, without detecting
    result = faces.process_image(np.zeros(shape, np.uint8), detector=faces.Detector())
    assert result.reason == faces.REASON_TOO_SMALL_IMAGE


def test_any_keras_module_registers_the_custom_objects_and_paths_stays_light(tmp_path) -> None:
    model = training.compile_model(network.build_c3ae(), loss="focal")
    model.save(tmp_path / "best.keras")
    script = (
        "import sys\n"
        "import c3ae_utils.paths\n"
        "assert 'keras' not in sys.modules, 'c3ae_utils.paths imported Keras'\n"
        "from c3ae_utils import inference\n"
        "import keras\n"
        "model = keras.saving.load_model(sys.argv[1])\n"
        "print(type(model.loss['distribution']).__name__, type(model.loss['age']).__name__)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "best.keras")],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == ["BalancedFocalLoss", "AgeL1Loss"]
