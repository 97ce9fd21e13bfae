"""Notebook 07 (predict and export) runs in the quick profile and writes what it promises."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from c3ae_utils import inference, paths


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_07_predicts_exports_and_measures(course_run, utkface_cache) -> None:
    course_run.run("07")
    metrics = json.loads((paths.artifacts_dir() / "metrics" / "inference.json").read_text())

    assert metrics["faces_per_photo"]["multiface.jpg"] >= 4  # the group photo shows six people
    assert metrics["faces_per_photo"]["two_people.jpg"] == 2
    assert any(label.startswith("ours") for label in metrics["models"]), (
        "no run of notebook 05 used"
    )
    table = utkface_cache.table
    validation_ages = table.loc[table["split"] == "val", "age"]
    mean_predictor = (validation_ages - table.loc[table["split"] == "train", "age"].mean()).abs().mean()
    for label, mae in metrics["validation_mae"].items():  # ours and the reference, same faces
        assert mae < mean_predictor, (label, mae, mean_predictor)

    export_dir = paths.artifacts_dir() / "export"
    for name in inference.EXPORT_FORMATS:
        assert metrics["export_sizes_mb"][name] > 0.05
    assert sorted(path.suffix for path in export_dir.glob("c3ae*.*")) == [
        ".keras",
        ".onnx",
        ".tflite",
        ".tflite",
        ".tflite",
    ]
    assert metrics["export_sizes_mb"]["tflite_float16"] < 0.32  # smaller than SSR-Net

    assert metrics["num_parity_faces"] >= 100
    for name in ("tflite_float32", "onnx"):
        assert metrics["parity"][name]["max_age_diff"] < 0.05
    assert metrics["parity"]["tflite_int8"]["mean_age_diff"] < 2.0

    latency = pd.DataFrame(metrics["latency"])
    assert set(latency["backend"]) >= set(inference.EXPORT_FORMATS)
    ms_per_face = 1e3 / latency["faces_per_s"]
    assert ((ms_per_face * latency["batch_size"] - latency["ms_per_batch"]).abs() < 0.02 * latency["ms_per_batch"] + 0.01).all()

    video_csv = paths.artifacts_dir() / "predictions" / "short_hamilton_clip_faces.csv"
    rows = pd.read_csv(video_csv)
    assert list(rows.columns) == inference.CSV_COLUMNS
    assert len(rows) == metrics["video"]["faces"] > 0
    assert (paths.artifacts_dir() / "predictions" / "short_hamilton_clip_annotated.mp4").is_file()
