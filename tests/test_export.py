"""Export to TFLite (float32, float16, int8) and ONNX: files, parity with Keras on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from c3ae_utils import datasets, faces, inference, network

NUM_UTKFACE = 24
SSR_NET_MB = 0.32  # SSR-Net's model size (Yang et al. 2018), the compact baseline


@pytest.fixture(scope="module")
def model(mirror: Path):
    return network.load_reference_h5(mirror / "reference_c3ae" / "c3ae_imdb_v89.h5")


@pytest.fixture(scope="module")
def real_crops(mirror: Path) -> np.ndarray:
    """Crops uint8 [n, 3, 64, 64, 3] of real faces: UTKFace portraits and a group photo."""
    folder = datasets.fetch("utkface") / "UTKFace"
    files = sorted(folder.glob("*.jpg"))
    chosen = files[:: len(files) // NUM_UTKFACE][:NUM_UTKFACE]
    images = [faces.read_image(path) for path in chosen]
    images.append(faces.read_image(mirror / "demo" / "timesler_facenet-pytorch" / "multiface.jpg"))
    _, crops = inference.preprocess_images(images)
    assert len(crops) >= NUM_UTKFACE
    return crops


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> dict[str, Path]:
    return inference.export_all(model, tmp_path_factory.mktemp("export"), stem="v89")


@pytest.fixture(scope="module")
def differences(model, exported, real_crops) -> dict[str, dict[str, float]]:
    report = inference.compare_exports(model, exported, real_crops)
    print("\nexport vs Keras on", len(real_crops), "real faces:")
    for name, values in report.items():
        print(f"  {name:15s}", {key: round(value, 5) for key, value in values.items()})
    return report


def test_every_format_is_written_and_float16_is_smaller_than_ssr_net(exported) -> None:
    assert set(exported) == set(inference.EXPORT_FORMATS)
    sizes = {name: path.stat().st_size / 1e6 for name, path in exported.items()}
    assert all(path.suffix in {".tflite", ".onnx"} for path in exported.values())
    # 53,993 float32 parameters are 0.216 MB; halving and quantizing shrink the file.
    assert 0.2 < sizes["tflite_float32"] < 0.4
    assert sizes["tflite_int8"] < sizes["tflite_float16"] < sizes["tflite_float32"]
    assert sizes["tflite_float16"] < SSR_NET_MB


def test_float32_exports_match_keras_on_real_faces(differences) -> None:
    for name in ("tflite_float32", "onnx"):
        assert differences[name]["max_age_diff"] < 0.05, name
        assert differences[name]["max_distribution_diff"] < 1e-3, name


def test_quantized_exports_stay_close(differences) -> None:
    # Reported numbers; the bounds only catch a broken conversion (e.g. lost weights).
    assert differences["tflite_float16"]["max_age_diff"] < 1.0
    assert differences["tflite_int8"]["mean_age_diff"] < 2.0
    assert differences["tflite_int8"]["max_age_diff"] < 6.0


def test_runners_take_any_batch_size(exported, real_crops) -> None:
    for path in exported.values():
        runner = inference.load_runner(path, num_threads=2)
        batch = network.predict_ages(runner, real_crops[:7], batch_size=7)  # one call of 7
        single = network.predict_ages(runner, real_crops[3:4])
        assert batch["age"].shape == (7,) and batch["distribution"].shape == (7, 12)
        np.testing.assert_allclose(single["age"], batch["age"][3:4], atol=1e-3)


def test_an_exported_model_predicts_photos_like_keras(model, exported, mirror) -> None:
    photo = faces.read_image(mirror / "demo" / "ageitgey_face_recognition" / "two_people.jpg")
    expected = inference.AgeEstimator(model).predict_image(photo)
    runner = inference.load_runner(exported["tflite_float32"])
    predicted = inference.AgeEstimator(runner, name="tflite").predict_image(photo)
    assert len(predicted) == len(expected) == 2
    np.testing.assert_allclose([p.age for p in predicted], [p.age for p in expected], atol=0.05)


def test_benchmark_reports_every_backend(model, exported) -> None:
    rows = inference.benchmark(model, exported, batch_sizes=(1, 8), num_threads=2, repeats=5)
    assert len(rows) == 2 * (len(exported) + 2)
    for row in rows:  # the three timing columns describe the same median call
        assert row["faces_per_s"] == pytest.approx(1e3 * row["batch_size"] / row["ms_per_batch"], rel=0.01)
    sizes = {row["backend"]: row["size_mb"] for row in rows}
    assert sizes["tflite_float16"] == pytest.approx(
        exported["tflite_float16"].stat().st_size / 1e6, abs=1e-3
    )


def test_export_errors_say_what_is_wrong(model, tmp_path) -> None:
    with pytest.raises(ValueError, match="quantization"):
        inference.export_tflite(model, tmp_path / "model.tflite", quantization="int4")
    with pytest.raises(ValueError, match=".tflite or .onnx"):
        inference.load_runner(tmp_path / "model.pb")
    with pytest.raises(FileNotFoundError):
        inference.load_runner(tmp_path / "missing.onnx")
