"""Course notebooks 05-07, run with SMALL_RUN = True: notebook 05 trains the focal and the
cross-entropy runs on the shared UTKFace cache, 06 analyses them (and fine-tunes on FG-NET), 07
predicts with them and exports one; the tests check what each writes.

One module, so that pytest-xdist (`--dist loadfile`) runs them in order on one worker (06 and 07
read 05's runs); notebooks 01-04 are in test_notebooks.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from c3ae_utils import course, evaluation, faces, inference, paths

pytestmark = [pytest.mark.notebook, pytest.mark.slow]  # each notebook runs for 10-60 s
SMALL = course.size(True)


# ----------------------------------------------------------------------------
# Notebook 05 trains focal and cross-entropy runs on notebook 02's cache with SMALL_RUN = True.
# ----------------------------------------------------------------------------


def test_notebook_05_trains_both_runs(course_run, utkface_cache):
    course_run.run("05")
    train_ages = utkface_cache.table.loc[utkface_cache.table["split"] == "train", "age"]
    for loss in course.COURSE_LOSSES:
        run = course.trained_run(loss, small_run=True)  # what notebooks 06 and 07 read
        assert run.config.loss == loss
        assert run.config.cache_name == faces.cache_name("utkface", SMALL.max_images)
        assert run.config.epochs == SMALL.epochs and run.config.batch_size == SMALL.batch_size
        assert len(run.history) == SMALL.epochs
        assert (run.path / "best.keras").is_file() and (run.path / "last.keras").is_file()
        assert np.isfinite(run.history[["loss", "val_loss", "age_mae", "val_age_mae"]].to_numpy()).all()
        assert run.history["loss"].iloc[-1] < run.history["loss"].iloc[0], "training loss did not go down"
        predictions = run.predictions()
        assert len(predictions) == run.metrics["val_samples"] > 0
        mean_predictor = (predictions["age"] - train_ages.mean()).abs().mean()  # same faces, one guess
        assert run.metrics["val_mae"] < mean_predictor, (loss, run.metrics["val_mae"], mean_predictor)
    for name in ("05_bin_weights", "05_focal_vs_cross_entropy", "05_learning_curves", "05_mae_by_age_bin"):
        assert (paths.figures_dir() / f"{name}.png").is_file(), name


# ----------------------------------------------------------------------------
# Notebook 06 (error analysis) with SMALL_RUN = True: the metrics, tables and figures it writes.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(course_run):
    course_run.run("06")
    path = paths.artifacts_dir() / "metrics" / "error_analysis.json"
    assert path.exists(), "notebook 06 did not write artifacts/metrics/error_analysis.json"
    return json.loads(path.read_text())


def test_notebook_06_cumulative_scores_are_monotone_and_end_at_most_one(report):
    evaluations = {**report["runs"], **report["reference"], **report["cross_dataset"]}
    assert set(report["runs"]) == set(course.COURSE_LOSSES)
    assert len(report["reference"]) == 2 and len(report["cross_dataset"]) == 2
    for name, metrics in evaluations.items():
        for key in ("cs", "cs_expected"):
            curve = np.array([metrics[key][str(theta)] for theta in evaluation.THETAS])
            assert np.all(np.diff(curve) >= 0), f"{name} {key} decreases: {curve}"
            assert curve[0] >= 0 and curve[-1] <= 1, f"{name} {key} out of [0, 1]: {curve}"


def test_notebook_06_grouped_counts_add_up(report):
    for name, metrics in {**report["runs"], **report["cross_dataset"]}.items():
        count = metrics["count"]
        assert count > 0
        assert sum(group["count"] for group in metrics["by_decade"].values()) == count, name
        assert np.array(metrics["bin_confusion"]).sum() == count, name
        assert metrics["bin_accuracy"] == pytest.approx(np.trace(metrics["bin_confusion"]) / count), name
    utkface = report["runs"]["focal"]
    assert {"female", "male"} <= set(utkface["by_gender"]) and len(utkface["by_race"]) >= 3
    assert len(utkface["w2"]["learned"]) == 12


def test_notebook_06_loso_ran_the_small_run_folds(report):
    loso = report["loso"]
    assert loso["num_folds"] == report["parameters"]["NUM_FOLDS"] == len(loso["folds"])
    assert len({fold["subject"] for fold in loso["folds"]}) == loso["num_folds"]
    assert all(fold["n_test"] > 0 and fold["n_train"] > fold["n_test"] for fold in loso["folds"])
    assert loso["mean_mae"] == pytest.approx(np.mean([fold["mae"] for fold in loso["folds"]]))
    assert all(fold["mae"] != fold["mae_before"] for fold in loso["folds"]), "fine-tuning changed nothing"


def test_notebook_06_trained_runs_beat_predicting_the_mean_age(report, utkface_cache):
    table = utkface_cache.table
    tested = table.loc[table["split"] == report["parameters"]["SPLIT"], "age"]
    mean_predictor = (tested - table.loc[table["split"] == "train", "age"].mean()).abs().mean()  # one guess
    for loss in course.COURSE_LOSSES:
        assert report["runs"][loss]["count"] == len(tested)
        assert report["runs"][loss]["mae"] < mean_predictor, (loss, report["runs"][loss]["mae"], mean_predictor)


def test_notebook_06_results_and_figures_were_written(report):
    results = (paths.artifacts_dir() / "results.md").read_text()
    assert "focal" in results and "reference-v89" in results and "FG-NET leave-one-subject-out" in results
    for name in ("cumulative_scores", "error_by_age", "errors_by_group", "worst_predictions",
                 "bin_confusion", "w2_vs_bins", "model_comparison", "fgnet_loso"):
        assert (paths.figures_dir() / f"06_{name}.png").stat().st_size > 1000, name


# ----------------------------------------------------------------------------
# Notebook 07 (predict and export) runs with SMALL_RUN = True and writes what it promises.
# ----------------------------------------------------------------------------


def test_notebook_07_predicts_exports_and_measures(course_run, utkface_cache) -> None:
    course_run.run("07")
    metrics = json.loads((paths.artifacts_dir() / "metrics" / "inference.json").read_text())

    assert metrics["faces_per_photo"]["multiface.jpg"] >= 4  # the group photo shows six people
    assert metrics["faces_per_photo"]["two_people.jpg"] == 2
    assert any(label.startswith("ours") for label in metrics["models"]), (
        "no run of notebook 05 used"
    )
    table = utkface_cache.table
    test_ages = table.loc[table["split"] == "test", "age"]
    mean_predictor = (test_ages - table.loc[table["split"] == "train", "age"].mean()).abs().mean()
    assert len(metrics["test_mae"]) == 3  # the course's model, the learner's and the reference, same faces
    for label, mae in metrics["test_mae"].items():
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



# ----------------------------------------------------------------------------
# Quiet, honest output: no TensorFlow start-up lines or retracing warnings in any notebook.
# ----------------------------------------------------------------------------

NOISE = ("cuInit", "absl::InitializeLog", "cudart_stub", "cpu_feature_guard", "retracing", "shuffle=True", "XNNPACK")


def test_no_notebook_shows_tensorflow_start_up_noise(course_run) -> None:
    course_run.run("07")
    for key, executed in course_run.executed.items():
        for cell in json.loads(executed.read_text())["cells"]:
            for output in cell.get("outputs", []):
                text = "".join(output.get("text", ""))
                assert not any(word in text for word in NOISE), (key, text[:300])
