"""`c3ae predict` never loses or silently misreports output (issue 27, classes 1 and 5).

Real photos from the data mirror (resized or re-encoded at test time, in tmp_path), real videos
written with OpenCV at test time, the shipped model (the default weights), real read-only and
full file systems (small tmpfs mounts: tests/filesystems.py), and a real
`c3ae predict` process stopped with SIGINT. Every other probe runs `inference.main` in this
process, with the shipped model loaded once (a subprocess costs seconds of TensorFlow start-up).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from filesystems import small_file_system

from c3ae_utils import faces, inference
from c3ae_utils.inference import command

TWO_PEOPLE = Path("demo") / "ageitgey_face_recognition" / "two_people.jpg"  # 1126 x 661, faces ~150 px
SELFIE = Path("demo") / "serengil_deepface" / "selfie-many-people.jpg"  # 600 x 604, four faces


@pytest.fixture(scope="module")
def estimator() -> inference.AgeEstimator:
    """The default weights (the shipped model), loaded once for every in-process command."""
    return inference.AgeEstimator.from_weights()


@pytest.fixture
def predict(estimator, monkeypatch, capsys):
    """`c3ae predict ARGS` in this process with the module's estimator: (exit code, stderr lines)."""
    loaded = classmethod(lambda cls, spec=None: estimator)
    monkeypatch.setattr(command.AgeEstimator, "from_weights", loaded)

    def run(*args: object) -> tuple[int, list[str]]:
        code = inference.main([str(arg) for arg in args])
        return code, capsys.readouterr().err.strip().splitlines()

    return run


@pytest.fixture(scope="module")
def people(mirror: Path) -> np.ndarray:
    """two_people.jpg at half size: RGB uint8 [330, 563, 3], two faces of about 75 px."""
    image = faces.read_image(mirror / TWO_PEOPLE)
    return cv2.resize(image, (563, 330), interpolation=cv2.INTER_AREA)


def _save(image: np.ndarray, path: Path, extension: str = ".jpg") -> Path:
    """Write an RGB image encoded as `extension` (whatever `path`'s suffix says)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes())
    return path


def _write_video(path: Path, image: np.ndarray, frames: int, fourcc: str = "mp4v") -> Path:
    """A real video of `frames` frames: `image` (RGB) drifting 2 px a frame, 25 frames/s."""
    height, width = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (width, height))
    for index in range(frames):
        writer.write(cv2.cvtColor(np.roll(image, 2 * index, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _video_frames(path: Path) -> int:
    """Frames OpenCV decodes from `path` (0 when it cannot open it)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def _summary(folder: Path) -> dict:
    return json.loads((folder / "predictions.json").read_text())


def test_outputs_of_inputs_with_the_same_name_never_overwrite_each_other(
    people, mirror, tmp_path, predict
) -> None:
    # Each input has its own size, so each annotated file shows which input it came from.
    inputs = [
        _save(people, tmp_path / "a" / "photo.jpg"),
        _save(cv2.resize(people, (500, 294)), tmp_path / "b" / "photo.jpg"),
        _save(faces.read_image(mirror / SELFIE), tmp_path / "a" / "photo.png", ".png"),
        _write_video(tmp_path / "clip.mp4", people[:, :400], frames=5),
        _write_video(tmp_path / "clip.avi", people[:, :360], frames=7, fourcc="MJPG"),
    ]
    output = tmp_path / "out"
    code, lines = predict(*inputs, "--output", output, "--stride", "100")
    assert code == 0, lines
    results = _summary(output)["results"]
    assert [result["input"] for result in results] == [str(path) for path in inputs]
    annotated = [result["annotated"] for result in results]
    assert len(set(annotated)) == len(inputs), annotated  # one file each, named in predictions.json
    for path, result in zip(inputs[:3], results[:3], strict=True):
        written = cv2.imread(result["annotated"])
        assert written is not None and written.shape == cv2.imread(str(path)).shape, result
    for result, frames in zip(results[3:], (5, 7), strict=True):
        assert _video_frames(Path(result["annotated"])) == result["frames_read"] == frames, result
        with open(result["csv"]) as table:
            assert len(list(csv.DictReader(table))) == result["num_faces"] > 0
    tables = [result["csv"] for result in results[3:]]
    assert len(set(tables)) == 2
    written = [Path(name).name for name in annotated + tables] + ["predictions.json"]
    assert sorted(path.name for path in output.iterdir()) == sorted(written)  # nothing else


def test_a_read_only_output_folder_is_one_line_and_nothing_is_read(
    people, tmp_path, predict, estimator
) -> None:
    photo = _save(people, tmp_path / "photo.jpg")
    clip = _write_video(tmp_path / "clip.mp4", people, frames=3)
    with small_file_system(tmp_path / "read_only", 64, read_only=True) as output:
        code, lines = predict(photo, clip, "--output", output)
        assert code == 1 and len(lines) == 2, lines  # the default-weights notice, then the error
        assert lines[1].startswith(f"c3ae predict: error: cannot write to --output {output}: ")
        # The video writer itself (used by the API too) refuses with the system's reason.
        refused = f"cannot write {output / 'clip.mp4'}: (Read-only|Permission)"
        with pytest.raises(OSError, match=refused):
            inference.predict_video(estimator, clip, output / "clip.mp4", None, stride=100)
        assert list(output.iterdir()) == []


def test_a_full_disk_fails_the_inputs_it_could_not_write_and_leaves_no_broken_file(
    people, tmp_path, predict
) -> None:
    photo = _save(people, tmp_path / "photo.jpg")  # its annotated copy: about 60 KiB
    clip = _write_video(tmp_path / "clip.mp4", people, frames=12)  # about 100 KiB annotated
    with small_file_system(tmp_path / "small_disk", 32) as output:
        code, lines = predict(photo, clip, "--output", output, "--stride", "100")
        assert code == 1, lines
        failed = [line for line in lines if line.startswith("c3ae predict: failed: ")]
        assert len(failed) == 2, lines
        assert all("no space left on device" in line.lower() for line in failed), failed
        assert "0 of 2 inputs with faces" in "\n".join(lines)
        summary = _summary(output)  # still written: it lists what was done, and what failed
        assert [result["failed"] for result in summary["results"]] == [True, True]
        assert [result["annotated"] for result in summary["results"]] == [None, None]
        assert summary["results"][0]["num_faces"] == 2  # the ages were predicted; the file is missing
        assert [path.name for path in output.iterdir()] == ["predictions.json"]  # no half a file


@pytest.mark.slow  # a real process: TensorFlow's start-up alone is 15-25 s of wall time on 2 busy cores
def test_ctrl_c_keeps_a_predictions_json_of_what_was_done(people, mirror, tmp_path) -> None:
    photos = [_save(cv2.resize(people, (563 - 8 * index, 330)), tmp_path / f"p{index}.jpg")
              for index in range(6)]
    output = tmp_path / "out"
    environment = dict(os.environ, C3AE_ARTIFACTS_DIR=str(tmp_path / "artifacts"))
    process = subprocess.Popen(
        [sys.executable, "-m", "c3ae_utils.cli", "predict", *map(str, photos), "--output", str(output)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=environment,
    )
    seen = []
    try:
        for line in process.stderr:  # the first photo done: stop the command as Ctrl-C does
            seen.append(line)
            if "face(s), ages" in line:
                process.send_signal(signal.SIGINT)
                break
        rest = process.communicate(timeout=120)[1]
    finally:
        process.kill()
    assert process.returncode == 130, "".join(seen) + rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith(f"c3ae predict: interrupted: {output / 'predictions.json'} lists the "), rest
    summary = _summary(output)
    assert summary["interrupted"] is True
    done = summary["results"]
    assert 1 <= len(done) < len(photos) and f"lists the {len(done)} of 6 inputs done" in last
    assert [result["input"] for result in done] == [str(path) for path in photos[: len(done)]]
    assert all(result["num_faces"] == 2 and Path(result["annotated"]).is_file() for result in done)


def test_a_folder_takes_every_file_that_decodes_and_names_what_it_skips(
    people, tmp_path, predict
) -> None:
    folder = tmp_path / "photos"
    jpegs = [_save(people, folder / name) for name in ("a.jfif", "b.jpe", "c.heic")]  # JPEGs, any name
    (folder / "notes.txt").write_text("not a photo")
    (folder / "clip.mp4").write_bytes(b"not a video either")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "pipe.jpg")  # reading it would wait for a writer forever
    output = tmp_path / "out"
    code, lines = predict(folder, "--output", output)
    assert code == 0, lines
    summary = _summary(output)
    assert [result["input"] for result in summary["results"]] == [str(path) for path in jpegs]
    assert all(result["num_faces"] == 2 for result in summary["results"])
    skipped = {Path(item["input"]).name: item["reason"] for item in summary["skipped"]}
    reasons = inference.inputs
    assert skipped == {"clip.mp4": reasons.SKIP_UNDECODABLE, "notes.txt": reasons.SKIP_UNDECODABLE,
                       "sub": reasons.SKIP_FOLDER, "pipe.jpg": reasons.SKIP_SPECIAL}
    for name, reason in skipped.items():
        assert f"{folder / name}: {reason}, skipped." in lines


def test_the_output_folder_is_never_read_as_input(people, tmp_path, predict) -> None:
    folder = tmp_path / "photos"
    _save(people, folder / "photo.jpg")
    for _ in range(2):  # predicting into the input folder, twice
        code, lines = predict(folder, "--output", folder)
        assert code == 1 and "is also an input folder" in lines[-1], lines
        assert [path.name for path in folder.iterdir()] == ["photo.jpg"]  # nothing written
    for _ in range(2):  # into a folder inside it: the same single input each time
        code, lines = predict(folder, "--output", folder / "predictions")
        assert code == 0, lines
        results = _summary(folder / "predictions")["results"]
        assert [result["input"] for result in results] == [str(folder / "photo.jpg")]


def test_a_video_that_ends_early_says_so(people, tmp_path, predict, caplog) -> None:
    clip = _write_video(tmp_path / "clip.avi", people, frames=40, fourcc="MJPG")
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])  # a download cut in half: the header still says 40 frames
    output = tmp_path / "out"
    code, lines = predict(clip, "--output", output, "--stride", "1000")
    assert code == 0, lines
    result = _summary(output)["results"][0]
    assert 0 < result["frames_read"] < 40
    assert result["warning"].startswith(f"{clip} ended after {result['frames_read']} of the 40 frames")
    assert result["warning"] in caplog.text  # said while predicting, too
    assert _video_frames(Path(result["annotated"])) == result["frames_read"]


def test_faces_too_small_to_read_get_no_age(mirror, tmp_path, predict, estimator) -> None:
    full = faces.read_image(mirror / TWO_PEOPLE)
    thumbnail = cv2.resize(full, (40, 24), interpolation=cv2.INTER_AREA)  # faces of about 5 x 7 px
    path = _save(thumbnail, tmp_path / "thumbnail.png", ".png")
    output = tmp_path / "out"
    code, lines = predict(path, "--output", output)
    assert code == 1, lines  # no face could be given an age
    result = _summary(output)["results"][0]
    assert result["num_faces"] == 0 and result["faces"] == []
    assert result["error"] == faces.REASON_SMALL_FACE
    skipped = result["skipped_faces"]
    assert skipped and all(face["reason"] == faces.REASON_SMALL_FACE for face in skipped)
    assert f"< {faces.processing.MIN_FACE_SIZE:.0f} px" in skipped[0]["detail"]
    said = f"{path}: no face large enough for an age; 1 face(s) too small"
    assert any(line.startswith(said) for line in lines), lines
    # The API gives them no age either; the per-image policy says why.
    assert estimator.predict_image(thumbnail) == []
    processed = faces.process_image(thumbnail, policy="inference")
    assert processed.reason == faces.REASON_SMALL_FACE and processed.skipped and not processed.faces
