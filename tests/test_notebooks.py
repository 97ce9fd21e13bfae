"""Course notebooks 01-04, run with SMALL_RUN = True (one course run per xdist worker), and what
each one writes: tables, caches, metrics and figures the tests check.

Notebooks 05-07 (training and what reads its runs) are in test_notebooks_training.py, so that
the two halves of the course run on both workers at once; `course_run` runs a notebook's
prerequisites first (conftest.PREREQUISITES).
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from utkface_releases import labelled_images, release_of

from c3ae_utils import course, datasets, faces, paths

pytestmark = [pytest.mark.notebook, pytest.mark.slow]  # each notebook runs for 10-60 s
SMALL = course.size(True)


# ----------------------------------------------------------------------------
# Notebook 01 runs with SMALL_RUN = True and writes the three metadata tables with splits.
# ----------------------------------------------------------------------------


EXPECTED_ROWS = {"utkface": None, "fgnet": 1_002, "wiki": 38_138}  # UTKFace: its labelled images (utkface_releases)
COLUMNS = ["path", "age", "gender", "subject", "dataset", "split"]


@pytest.fixture(scope="module")
def notebook_01(course_run):
    return course_run.run("01")


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_notebook_01_writes_the_metadata_table(notebook_01, utkface_folder, name: str) -> None:
    table = pd.read_parquet(paths.metadata_path(name))
    assert len(table) == (EXPECTED_ROWS[name] or labelled_images(utkface_folder))
    assert set(COLUMNS) <= set(table.columns)
    assert (table["dataset"] == name).all() and table["path"].is_unique
    assert table["age"].dtype.kind == "i"
    assert set(table["gender"].dropna()) <= {"female", "male"}
    assert table.equals(datasets.read_metadata_table(name))


def test_notebook_01_splits_follow_the_protocols(notebook_01, utkface_folder) -> None:
    utkface = pd.read_parquet(paths.metadata_path("utkface"))
    counts = utkface["split"].value_counts().to_dict()
    assert counts == (release_of(utkface_folder).splits or counts)
    assert abs(counts["test"] / len(utkface) - 0.15) < 0.005 and counts["val"] == counts["test"]
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
    for figure in ("02_detections", "02_alignment", "02_triple_boundbox", "02_face_yield", "02_failures", "02_pose_distribution"):
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
