"""The course notebooks, run in order with SMALL_RUN = True (one shared course run), and what
each one writes: tables, caches, metrics and figures the tests check.

One module, so that pytest-xdist (`--dist loadfile`) runs the whole course on one worker.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from c3ae_utils import course, datasets, evaluation, faces, inference, paths

pytestmark = [pytest.mark.notebook, pytest.mark.slow]  # each notebook runs for 10-60 s
SMALL = course.size(True)


# ----------------------------------------------------------------------------
# Notebook 01 runs with SMALL_RUN = True and writes the three metadata tables with splits.
# ----------------------------------------------------------------------------


EXPECTED_ROWS = {"utkface": 22_207, "fgnet": 1_002, "wiki": 38_138}
COLUMNS = ["path", "age", "gender", "subject", "dataset", "split"]

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def notebook_01(course_run):
    return course_run.run("01")


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_notebook_01_writes_the_metadata_table(notebook_01, name: str) -> None:
    table = pd.read_parquet(paths.metadata_path(name))
    assert len(table) == EXPECTED_ROWS[name]
    assert set(COLUMNS) <= set(table.columns)
    assert (table["dataset"] == name).all() and table["path"].is_unique
    assert table["age"].dtype.kind == "i"
    assert set(table["gender"].dropna()) <= {"female", "male"}
    assert table.equals(datasets.read_metadata_table(name))


def test_notebook_01_splits_follow_the_protocols(notebook_01) -> None:
    utkface = pd.read_parquet(paths.metadata_path("utkface"))
    assert utkface["split"].value_counts().to_dict() == {"train": 15_545, "val": 3_331, "test": 3_331}
    assert utkface["split"].equals(datasets.split(utkface.drop(columns="split"), seed=0))
    fgnet = pd.read_parquet(paths.metadata_path("fgnet"))
    assert (fgnet["split"] == "train").all(), "FG-NET is evaluated with leave-one-subject-out folds"
    assert fgnet["subject"].nunique() == 82
    wiki = pd.read_parquet(paths.metadata_path("wiki"))
    assert set(wiki["split"]) == {"train", "val", "test"}
    assert abs((wiki["split"] == "test").mean() - 0.15) < 0.005
    assert wiki["age"].between(0, 100).all() and wiki["gender"].notna().all()


def test_notebook_01_saves_its_figures(notebook_01) -> None:
    for name in ("01_wiki_cleaning_funnel", "01_age_imbalance", "01_faces_by_decade_utkface",
                 "01_faces_by_decade_fgnet", "01_age_gender_distributions", "01_wiki_raw_age_noise"):
        assert (paths.figures_dir() / f"{name}.png").stat().st_size > 10_000, name


# ----------------------------------------------------------------------------
# Notebook 02 runs with SMALL_RUN = True and writes the face caches notebooks 03-06 read.
# ----------------------------------------------------------------------------


def test_notebook_02_writes_the_caches(course_run):
    course_run.run("02")
    max_images = SMALL.max_images
    # Detection rates, crop contents and the builder itself are tested in test_faces and
    # test_face_cache, on these same caches; here: the caches the later notebooks will read.
    for dataset in ("utkface", "fgnet"):
        cache = faces.load_cache(faces.cache_name(dataset, max_images))
        assert cache.path.parent == paths.cache_dir()
        assert len(cache.table) + len(cache.failures) == max_images
        expected = {"train", "val", "test"} if dataset == "utkface" else {"train"}  # FG-NET: LOSO folds
        assert set(cache.table["split"]) == expected
    for figure in ("02_detections", "02_alignment", "02_triple_boundbox", "02_failures", "02_pose_distribution"):
        assert (paths.figures_dir() / f"{figure}.png").exists(), figure


# ----------------------------------------------------------------------------
# Notebook 03 (encode ages) runs with SMALL_RUN = True and writes sound encoding checks.
# ----------------------------------------------------------------------------


def test_notebook_03_writes_the_encoding_checks(course_run) -> None:
    course_run.run("03")
    check = json.loads((paths.artifacts_dir() / "metrics" / "encoding_check.json").read_text())

    errors = check["round_trip_max_error"]
    assert errors["two-point"] < 1e-4  # exact up to float32 rounding
    assert 4.9 <= errors["one-hot"] <= 5.0  # half a bin
    assert errors["Gaussian"] > 1.0  # biased near the ends

    assert check["dataset_images"] > 20_000 and check["oldest_face"] == 116.0  # all of UTKFace
    above = check["faces_above_last_bin"]
    assert above["10"] > above["11"] > above["12"] > 0 == above["13"]

    sizes = check["split_sizes"]
    assert set(sizes) == {"train", "val", "test"} and sum(sizes.values()) == check["num_faces"]
    cached = SMALL.max_images
    assert 0.95 * cached <= check["num_faces"] <= cached  # the small run's cache
    assert math.isclose(sum(check["train_bin_mass"]), sizes["train"], rel_tol=1e-4)
    assert len(check["train_bin_mass"]) == 12

    batch = check["batch_shapes"]
    size = batch["crops"][0]
    assert batch == {"crops": [size, 3, 64, 64, 3], "distribution": [size, 12]} and size <= sizes["train"]
    assert check["steps_per_epoch"] == math.ceil(sizes["train"] / size)
    assert check["same_seed_same_batch"] is True
    assert check["augmented_changed_fraction"] > 0.5

    for figure in ("03_label_encodings", "03_round_trip_errors", "03_bin_mass",
                   "03_augmented_batch", "03_each_transform"):
        assert (paths.figures_dir() / f"{figure}.png").stat().st_size > 10_000


# ----------------------------------------------------------------------------
# Notebook 04 (build the model) runs with SMALL_RUN = True and writes a sound model summary.
# ----------------------------------------------------------------------------


def test_notebook_04_writes_the_model_summary(course_run) -> None:
    course_run.run("04")
    summary = json.loads((paths.artifacts_dir() / "metrics" / "model_summary.json").read_text())
    assert summary["params"] == [36_377, 48_633, 53_993]  # paper's Table 1, reference v84, v89
    assert summary["macs"]["branch (plain)"] == 12_562_816
    assert summary["macs"]["branch (SE)"] == 12_562_816 + 5_120
    assert summary["macs"]["whole model: v84: 3 scales, plain, no conv1 bias"] == 3 * 12_562_816 + 1536 * 12 + 12
    assert summary["num_faces"] >= 0.4 * SMALL.max_images  # adults 20-60
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
                 "bin_confusion", "w2_vs_bins", "fgnet_loso"):
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



# ----------------------------------------------------------------------------
# Quiet, honest output: no TensorFlow start-up lines or retracing warnings in any notebook.
# ----------------------------------------------------------------------------

NOISE = ("cuInit", "absl::InitializeLog", "cudart_stub", "cpu_feature_guard", "retracing")


def test_no_notebook_shows_tensorflow_start_up_noise(course_run) -> None:
    course_run.run("07")
    for key, executed in course_run.executed.items():
        for cell in json.loads(executed.read_text())["cells"]:
            for output in cell.get("outputs", []):
                text = "".join(output.get("text", ""))
                assert not any(word in text for word in NOISE), (key, text[:300])
