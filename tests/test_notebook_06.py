"""Notebook 06 (error analysis) in the quick profile: the metrics, tables and figures it writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from c3ae_utils import evaluation, paths

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def report(course_run):
    course_run.run("06")
    path = paths.artifacts_dir() / "metrics" / "error_analysis.json"
    assert path.exists(), "notebook 06 did not write artifacts/metrics/error_analysis.json"
    return json.loads(path.read_text())


def test_cumulative_scores_are_monotone_and_end_at_most_one(report):
    evaluations = {**report["runs"], **report["reference"], **report["cross_dataset"]}
    assert set(report["runs"]) == {"focal", "kl"}
    assert len(report["reference"]) == 2 and len(report["cross_dataset"]) == 2
    for name, metrics in evaluations.items():
        for key in ("cs", "cs_expected"):
            curve = np.array([metrics[key][str(theta)] for theta in evaluation.THETAS])
            assert np.all(np.diff(curve) >= 0), f"{name} {key} decreases: {curve}"
            assert curve[0] >= 0 and curve[-1] <= 1, f"{name} {key} out of [0, 1]: {curve}"


def test_grouped_counts_add_up(report):
    for name, metrics in {**report["runs"], **report["cross_dataset"]}.items():
        count = metrics["count"]
        assert count > 0
        assert sum(group["count"] for group in metrics["by_decade"].values()) == count, name
        assert np.array(metrics["bin_confusion"]).sum() == count, name
        assert metrics["bin_accuracy"] == pytest.approx(np.trace(metrics["bin_confusion"]) / count), name
    utkface = report["runs"]["focal"]
    assert {"female", "male"} <= set(utkface["by_gender"]) and len(utkface["by_race"]) >= 3
    assert len(utkface["w2"]["learned"]) == 12


def test_loso_ran_the_quick_profile_folds(report):
    loso = report["loso"]
    assert loso["num_folds"] == report["parameters"]["NUM_FOLDS"] == len(loso["folds"])
    assert len({fold["subject"] for fold in loso["folds"]}) == loso["num_folds"]
    assert all(fold["n_test"] > 0 and fold["n_train"] > fold["n_test"] for fold in loso["folds"])
    assert loso["mean_mae"] == pytest.approx(np.mean([fold["mae"] for fold in loso["folds"]]))
    assert all(fold["mae"] != fold["mae_before"] for fold in loso["folds"]), "fine-tuning changed nothing"


def test_trained_runs_beat_predicting_the_mean_age(report, utkface_cache):
    metrics_dir = paths.artifacts_dir() / "metrics"
    train_ages = utkface_cache.table.loc[utkface_cache.table["split"] == "train", "age"]
    for loss in ("focal", "kl"):
        faces_tested = pd.read_csv(metrics_dir / f"error_analysis_{loss}_predictions.csv")
        mean_predictor = (faces_tested["age"] - train_ages.mean()).abs().mean()
        assert report["runs"][loss]["mae"] < mean_predictor, (loss, report["runs"][loss]["mae"], mean_predictor)


def test_tables_results_and_figures_were_written(report):
    metrics_dir = paths.artifacts_dir() / "metrics"
    predictions = pd.read_csv(metrics_dir / "error_analysis_focal_predictions.csv")
    assert len(predictions) == report["runs"]["focal"]["count"]
    assert {"age", "predicted_age", "expected_age", "p00", "p11", "gender", "race", "yaw"} <= set(predictions)
    assert np.allclose(predictions[[f"p{k:02d}" for k in range(12)]].sum(axis=1), 1, atol=1e-4)
    folds = pd.read_csv(metrics_dir / "error_analysis_loso_folds.csv")
    assert len(folds) == report["loso"]["num_folds"]
    results = (paths.artifacts_dir() / "results.md").read_text()
    assert "focal" in results and "reference-v89" in results and "FG-NET leave-one-subject-out" in results
    for name in ("cumulative_scores", "error_by_age", "errors_by_group", "worst_predictions",
                 "bin_confusion", "w2_vs_bins", "fgnet_loso"):
        assert (paths.figures_dir() / f"06_{name}.png").stat().st_size > 1000, name
