"""Notebook 05 trains focal and KL runs on notebook 02's cache in the quick profile."""

from __future__ import annotations

import numpy as np
import pytest

from c3ae_utils import course, faces, paths, training

QUICK = course.profile_parameters("quick")


@pytest.mark.notebook
def test_notebook_05_trains_both_runs(course_run, utkface_cache):
    course_run.run("05")
    train_ages = utkface_cache.table.loc[utkface_cache.table["split"] == "train", "age"]
    for loss in ("focal", "kl"):
        run = training.load_run(f"utkface-{loss}-quick")  # the names notebook 06 reads
        assert run.config.loss == loss
        assert run.config.cache_name == faces.cache_name("utkface", QUICK["MAX_IMAGES"])
        assert run.config.epochs == QUICK["EPOCHS"] and run.config.batch_size == QUICK["BATCH_SIZE"]
        assert len(run.history) == QUICK["EPOCHS"]
        assert (run.path / "best.keras").is_file() and (run.path / "last.keras").is_file()
        assert np.isfinite(run.history[["loss", "val_loss", "age_mae", "val_age_mae"]].to_numpy()).all()
        assert run.history["loss"].iloc[-1] < run.history["loss"].iloc[0], "training loss did not go down"
        predictions = run.predictions()
        assert len(predictions) == run.metrics["val_samples"] > 0
        mean_predictor = (predictions["age"] - train_ages.mean()).abs().mean()  # same faces, one guess
        assert run.metrics["val_mae"] < mean_predictor, (loss, run.metrics["val_mae"], mean_predictor)
    for name in ("05_bin_weights", "05_focal_vs_cross_entropy", "05_learning_curves", "05_mae_by_age_bin"):
        assert (paths.figures_dir() / f"{name}.png").is_file(), name
