"""Notebook 03 (encode ages) runs in the quick profile and writes sound encoding checks."""

from __future__ import annotations

import json
import math

import pytest

from c3ae_utils import course, paths


@pytest.mark.notebook
def test_notebook_03_writes_the_encoding_checks(course_run) -> None:
    course_run.run("03")
    check = json.loads((paths.artifacts_dir() / "metrics" / "encoding_check.json").read_text())

    errors = check["round_trip_max_error"]
    assert errors["two-point"] < 1e-4  # exact up to float32 rounding
    assert 4.9 <= errors["one-hot"] <= 5.0  # half a bin
    assert errors["Gaussian"] > 1.0  # biased near the ends

    assert check["num_bins"] == 12 and check["max_age"] == 110.0
    assert check["dataset_images"] > 20_000 and check["oldest_face"] == 116.0  # all of UTKFace
    above = check["faces_above_last_bin"]
    assert above["10"] > above["11"] > above["12"] > 0 == above["13"]

    sizes = check["split_sizes"]
    assert set(sizes) == {"train", "val", "test"} and sum(sizes.values()) == check["num_faces"]
    cached = course.profile_parameters("quick")["MAX_IMAGES"]
    assert 0.95 * cached <= check["num_faces"] <= cached  # the quick profile's cache
    assert math.isclose(sum(check["train_bin_mass"]), sizes["train"], rel_tol=1e-4)
    assert len(check["train_bin_mass"]) == 12

    batch = check["batch_shapes"]
    size = course.profile_parameters("quick")["BATCH_SIZE"]
    assert batch == {"crops": [size, 3, 64, 64, 3], "age": [size, 1], "distribution": [size, 12]}
    assert check["batch_dtypes"] == {"crops": "uint8", "age": "float32", "distribution": "float32"}
    assert check["steps_per_epoch"] == math.ceil(sizes["train"] / size)
    assert check["same_seed_same_batch"] is True
    assert check["augmented_changed_fraction"] > 0.5

    for figure in ("03_label_encodings", "03_round_trip_errors", "03_bin_mass",
                   "03_augmented_batch", "03_each_transform"):
        assert (paths.figures_dir() / f"{figure}.png").stat().st_size > 10_000
