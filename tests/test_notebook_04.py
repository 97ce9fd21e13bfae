"""Notebook 04 (build the model) runs in the quick profile and writes a sound model summary."""

from __future__ import annotations

import json

import pytest

from c3ae_utils import course, paths


@pytest.mark.notebook
def test_notebook_04_writes_the_model_summary(course_run) -> None:
    course_run.run("04")
    summary = json.loads((paths.artifacts_dir() / "metrics" / "model_summary.json").read_text())
    assert summary["params"] == {
        "paper_single_scale_plain": 36_377,
        "three_scale_plain": 48_633,
        "three_scale_se": 53_993,
    }
    assert summary["macs"]["branch_plain"] == 12_562_816
    assert summary["macs"]["branch_se"] == 12_562_816 + 5_120
    assert summary["macs"]["model_three_scale_plain"] == 3 * 12_562_816 + 1536 * 12 + 12
    assert summary["num_faces"] >= 0.4 * course.profile_parameters("quick")["MAX_IMAGES"]  # adults 20-60
    baseline = summary["mean_predictor_mae"]
    assert baseline > 6.0
    for name in ("v84", "v89"):
        reference = summary["reference"][name]
        assert reference["mae"] < 0.85 * baseline, (name, reference["mae"], baseline)
        assert reference["mae_expectation"] > reference["mae"]  # the learned W2 is not the bins
    assert summary["broken_batchnorm_mae"] > summary["reference"]["v89"]["mae"] + 3
    for model_age in summary["portraits"]["timg.jpg"].values():
        assert 55 <= model_age <= 72
    for model_age in summary["portraits"]["pattern5.jpg"].values():
        assert 15 <= model_age <= 25
    for figure in ("04_architecture", "04_se_channel_scales", "04_reference_portraits"):
        assert (paths.figures_dir() / f"{figure}.png").stat().st_size > 10_000
