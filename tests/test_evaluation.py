"""Metrics on hand-made cases, the model plumbing, and grouping/results on a real small run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from c3ae_utils import age_encoding, evaluation, network, paths, training
from c3ae_utils.evaluation.results import _describe_run

# --------------------------------------------------------------------------- hand-made cases


def test_mean_absolute_error_by_hand():
    assert evaluation.mean_absolute_error([20, 30, 40], [22, 27, 40]) == pytest.approx(5 / 3)
    assert evaluation.mean_absolute_error([5], [5]) == 0.0


@pytest.mark.parametrize(
    ("true", "predicted", "message"),
    [([1, 2], [1], "one prediction per face"), ([], [], "empty"), ([1, np.nan], [1, 2], "finite")],
)
def test_mean_absolute_error_rejects_bad_input(true, predicted, message):
    with pytest.raises(ValueError, match=message):
        evaluation.mean_absolute_error(true, predicted)


def test_cumulative_score_by_hand():
    # absolute errors 2, 3, 0, 10.5
    scores = evaluation.cumulative_score([20, 30, 40, 50], [22, 27, 40, 60.5])
    expected = [0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75, 0.75]
    np.testing.assert_allclose(scores, expected)
    assert evaluation.cumulative_score([30], [31.9999999], thetas=[2])[0] == 1.0
    assert evaluation.cumulative_score([30], [32], thetas=[0, 1.5, 2]).tolist() == [0, 0, 1]


def test_cumulative_score_is_monotone_and_at_most_one():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, 500)
    scores = evaluation.cumulative_score(true, true + rng.normal(0, 6, 500))
    assert np.all(np.diff(scores) >= 0) and scores[-1] <= 1.0 and scores[0] >= 0.0
    with pytest.raises(ValueError, match="thetas"):
        evaluation.cumulative_score([1], [1], thetas=[-1])


def test_grouped_errors_by_hand():
    table = pd.DataFrame(
        {
            "age": [20, 30, 40, 50, 60],
            "predicted_age": [22, 26, 40, 45, 61],
            "gender": ["female", "female", "male", pd.NA, "male"],
        }
    )
    groups = evaluation.grouped_errors(table, "gender")
    assert list(groups.index) == ["female", "male"]  # the missing label is left out
    assert groups.loc["female", "count"] == 2
    assert groups.loc["female", "mae"] == pytest.approx(3.0)  # |+2|, |-4|
    assert groups.loc["female", "bias"] == pytest.approx(-1.0)
    assert groups.loc["male", "mae"] == pytest.approx(0.5)  # 0, |+1|
    assert groups.loc["male", "mean_age"] == pytest.approx(50.0)
    by_label = evaluation.grouped_errors(table, ["a", "a", "b", "b", "b"])
    assert by_label.loc["b", "mae"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="columns"):
        evaluation.grouped_errors(table, "gender", predicted_column="missing")


def test_age_and_pose_groups():
    groups = evaluation.age_groups([0, 9, 10, 29.5, 95, 120])
    assert list(groups.astype(str)) == ["0-9", "0-9", "10-19", "20-29", "90+", "90+"]
    poses = evaluation.pose_groups([0, -12, 25, 50, np.nan])
    assert list(poses.astype(str)[:4]) == ["0-10", "10-20", "20-30", "45+"]
    assert pd.isna(poses[4])


def test_bias_slope_detects_regression_to_the_mean():
    true = np.arange(0, 100, dtype=float)
    assert evaluation.bias_slope(true, 0.5 * true + 20) == pytest.approx(-0.5)
    assert evaluation.bias_slope(true, true + 3) == pytest.approx(0.0, abs=1e-9)


def test_bin_confusion_by_hand():
    distributions = np.eye(12)[[3, 4, 11, 0]]
    matrix = evaluation.bin_confusion([32, 35, 116, 4], distributions)  # 35: 50/50 -> lower bin
    assert matrix.shape == (12, 12) and matrix.sum() == 4
    assert matrix[3, 3] == 1 and matrix[3, 4] == 1 and matrix[11, 11] == 1 and matrix[0, 0] == 1


def test_refresh_page_only_touches_the_marked_section(tmp_path):
    page = tmp_path / "results.md"
    page.write_text(f"# Title\nintro\n{evaluation.PAGE_START}\nold table\n{evaluation.PAGE_END}\nend\n")
    assert evaluation.refresh_page("| new |\n", page)
    assert page.read_text() == (
        f"# Title\nintro\n{evaluation.PAGE_START}\n| new |\n{evaluation.PAGE_END}\nend\n"
    )
    unmarked = tmp_path / "OTHER.md"
    unmarked.write_text("# no markers\n")
    assert not evaluation.refresh_page("| new |\n", unmarked)
    assert unmarked.read_text() == "# no markers\n"
    assert evaluation.results_page() == paths.repo_root() / "docs" / "results.md"  # README.md is left alone


def test_results_command_without_runs_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path))
    assert evaluation.main(["results", "--page", str(tmp_path / "results-page.md")]) == 1
    assert "run notebook 05" in capsys.readouterr().err
    assert not (tmp_path / "results.md").exists()


def test_seeds_are_aggregated_by_the_runs_own_settings_not_their_names():
    config = {"dataset": "utkface", "max_images": None, "loss": "kl", "epochs": 10, "use_se": True,
              "cache_name": "utkface"}
    base = {"test_data": "utkface test split", "n": 100, "mae_expected": 6.0, "cs5": 0.5}
    rows = pd.DataFrame(
        [
            # two seeds of one setting, under names that say nothing about it
            {**base, **_describe_run({**config, "seed": 0}), "run": "first", "mae": 6.0},
            {**base, **_describe_run({**config, "seed": 1}), "run": "second", "mae": 7.0},
            # the same name pattern with another loss is another setting
            {**base, **_describe_run({**config, "loss": "focal", "seed": 0}), "run": "first-focal", "mae": 5.5},
            # trained on train + val: another setting; train_on_val=False is the setting of older runs
            {**base, **_describe_run({**config, "train_on_val": True, "seed": 0}), "run": "final", "mae": 5.0},
            {**base, **_describe_run({**config, "train_on_val": False, "seed": 2}), "run": "third", "mae": 6.5},
        ]
    )
    aggregated = evaluation.aggregate_seeds(rows).set_index("setting")
    assert aggregated.loc["utkface-kl", "runs"] == 3 and aggregated.loc["utkface-focal", "runs"] == 1
    assert aggregated.loc["utkface-kl-trainval", "runs"] == 1
    assert "train_on_val=True" in aggregated.loc["utkface-kl-trainval", "command"]
    assert aggregated.loc["utkface-kl", "mae_mean"] == pytest.approx(6.5)
    assert aggregated.loc["utkface-kl", "mae_std"] == pytest.approx(0.5)
    assert aggregated.loc["utkface-kl", "cache"] == "utkface"
    markdown = evaluation.results_markdown(aggregated.reset_index())
    assert "6.50 ± 0.50" in markdown and "| 3 (0, 1, 2) |" in markdown
    assert "| utkface-focal |" in markdown and "loss='focal'" in markdown
    assert "FG-NET leave-one-subject-out" in markdown  # the paper's protocol is named


# --------------------------------------------------------------------------- model plumbing


def test_w2_comparison_reads_the_age_kernel():
    frozen = evaluation.w2_comparison(network.build_c3ae(learn_w2=False))
    np.testing.assert_allclose(frozen["learned"], age_encoding.bin_values())
    assert frozen["difference"].abs().max() == 0 and frozen.attrs["bias"] == 0
    random = evaluation.w2_comparison(network.build_c3ae(learn_w2=True, w2_init="random"))
    assert random["difference"].abs().max() > 1.0


# --------------------------------------------------------------------------- a real small run


@pytest.fixture(scope="module")
def small_run(face_caches, utkface_cache, fgnet_cache, tmp_path_factory):
    """A KL run of one epoch on the shared real UTKFace cache (FG-NET's beside it)."""
    root = tmp_path_factory.mktemp("evaluation")
    patch = pytest.MonkeyPatch()
    patch.setenv("C3AE_ARTIFACTS_DIR", str(root / "artifacts"))
    patch.setenv("C3AE_CACHE_DIR", str(face_caches))
    run = training.train(training.TrainConfig(
        cache_name=utkface_cache.path.name, loss="kl", epochs=1, batch_size=32, run_name="utkface-kl-quick", verbose=0,
    ))
    yield {"run": run, "cache": utkface_cache, "fgnet": fgnet_cache, "root": root}
    patch.undo()


def test_evaluate_agrees_with_the_run_it_reads(small_run):
    run, cache = small_run["run"], small_run["cache"]
    result = evaluation.evaluate(run, cache, split="val")
    assert len(result.table) == int((cache.table["split"] == "val").sum()) == run.metrics["val_samples"]
    # training wrote its own validation MAE with model.predict: the same model, the same faces
    assert result.mae == pytest.approx(run.metrics["val_mae"], abs=1e-3)
    assert result.metrics["mae_expected"] == pytest.approx(run.metrics["val_expected_mae"], abs=1e-3)
    probabilities = result.table[evaluation.distribution_columns()].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(result.table["expected_age"], age_encoding.decode(probabilities), atol=1e-3)
    assert set(result.table["split"]) == {"val"} and result.table["path"].str.endswith("jpg").all()


def test_grouping_on_a_real_run(small_run):
    result = evaluation.evaluate(small_run["run"].path, small_run["cache"], split="all")
    table, metrics = result.table, result.metrics
    assert metrics["count"] == len(table) == len(small_run["cache"].table)
    assert sum(group["count"] for group in metrics["by_decade"].values()) == len(table)
    assert sum(group["count"] for group in metrics["by_gender"].values()) == int(table["gender"].notna().sum())
    assert set(metrics["by_race"]) <= {"white", "black", "asian", "indian", "others"}
    assert set(metrics["by_gender"]) == {"female", "male"}
    # one group by hand: the MAE of the women
    women = table[table["gender"] == "female"]
    assert metrics["by_gender"]["female"]["mae"] == pytest.approx((women["predicted_age"] - women["age"]).abs().mean())
    assert sum(group["count"] for group in metrics["by_pose"].values()) == int(table["yaw"].notna().sum())
    assert np.array(metrics["bin_confusion"]).sum() == len(table)
    curve = result.cs_curve()
    assert np.all(np.diff(curve) >= 0) and curve.iloc[-1] <= 1
    assert len(metrics["w2"]["learned"]) == 12 and metrics["w2"]["max_abs_difference"] < 5  # started at the bins
    worst = result.worst(5)
    assert list(worst["abs_error"]) == sorted(table["abs_error"], reverse=True)[:5]


def test_leave_one_subject_out_on_real_fgnet_faces(small_run):
    fgnet = small_run["fgnet"]
    before = evaluation.evaluate(small_run["run"], fgnet, split="all")
    fine_tuned = training.leave_one_subject_out(small_run["run"], fgnet, num_folds=2, epochs=1, batch_size=16, seed=3)
    loso = evaluation.loso_result(fine_tuned, fgnet)
    assert len(loso.folds) == 2 and loso.folds["subject"].nunique() == 2
    assert len(loso.predictions) == loso.folds["n_test"].sum()
    assert (loso.folds["n_train"] + loso.folds["n_test"] == len(fgnet.table)).all()
    for fold in loso.folds.itertuples():
        held_out = loso.predictions[loso.predictions["fold"] == fold.fold]
        assert set(fgnet.table["subject"].iloc[held_out["cache_index"]]) == {fold.subject}
        # before fine-tuning, the fold's model is the run itself
        reference = before.table.set_index("cache_index").loc[held_out["cache_index"]]
        assert fold.mae_before == pytest.approx(reference["abs_error"].mean(), abs=1e-3)
    assert np.isfinite(loso.mean_mae) and not np.allclose(loso.folds["mae"], loso.folds["mae_before"])
    assert training.subject_folds(fgnet.table, 2, seed=3)[0].tolist() == sorted(
        loso.predictions.loc[loso.predictions["fold"] == 0, "cache_index"])
    summary = json.loads(json.dumps(loso.to_dict()))
    assert summary["num_folds"] == 2 and summary["mean_mae"] == pytest.approx(loso.mean_mae)


def test_results_command_writes_the_table_and_only_the_page_section(small_run):
    page = small_run["root"] / "results-page.md"
    page.write_text(f"# Results\n\nkeep me\n\n{evaluation.PAGE_START}\nstale\n{evaluation.PAGE_END}\n\nkeep me too\n")
    assert evaluation.main(["results", "--page", str(page)]) == 0
    rows = pd.read_csv(small_run["root"] / "artifacts" / "results.csv")
    assert list(rows["run"]) == ["utkface-kl-quick", "c3ae-utkface", "reference-v89", "reference-v84"]
    assert (rows["test_data"] == "utkface test split").all() and rows["mae"].between(0, 120).all()
    assert rows.loc[0, "cache"] == small_run["cache"].path.name and "loss='kl'" in rows.loc[0, "command"]
    markdown = (small_run["root"] / "artifacts" / "results.md").read_text()
    text = page.read_text()
    assert text.startswith("# Results\n\nkeep me\n\n") and text.endswith(f"{evaluation.PAGE_END}\n\nkeep me too\n")
    assert markdown in text and "stale" not in text and "| utkface-kl | kl |" in markdown
    assert "| c3ae-utkface (shipped, models/) | kl |" in markdown and "then `make release`" in markdown
