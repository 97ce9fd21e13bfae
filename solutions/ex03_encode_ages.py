"""Worked solutions to the exercises of notebook 03 (Encode ages).

Inputs: notebook 01's UTKFace metadata table (every image's age) and notebook 02's UTKFace
face cache for the same SMALL_RUN (`course.face_cache`).

    python -m solutions.ex03_encode_ages        # every exercise
    python -m solutions.ex03_encode_ages 3 4    # exercises 3 and 4
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

import solutions
from c3ae_utils import age_encoding, course

if TYPE_CHECKING:
    from c3ae_utils import pipeline

DATASET = "utkface"  # the notebook's DATASET
SEED = 0
SIGMAS = (3.0, 5.0, 10.0)  # exercise 2: Gaussian widths (years)
DRAWN_FACES = 100_000  # exercise 3: faces whose augmentation flags are drawn
TIMED_FACES = 128  # exercise 4: faces per timed batch
TIMED_REPEATS = 5  # exercise 4: timed calls per setting (the fastest counts)
TRANSFORMS = {"erase": "erase_probability", "contrast/brightness": "color_probability",
              "rotation": "rotation_probability", "flip": "flip_probability"}


def _all_ages() -> np.ndarray:
    """The age (years) of every image of the dataset: notebook 01's table, as notebook 03 uses."""
    return course.metadata_table(DATASET)["age"].to_numpy(dtype=np.float64)


def exercise_1(small_run: bool = True) -> dict[str, Any]:
    """Encode the ages with 10 bins and measure the decoded error of every face over 90: which
    faces are hurt most?"""
    ages = _all_ages()
    old = ages[ages > age_encoding.max_age(num_bins=10)]
    errors = age_encoding.decode(age_encoding.encode(old, num_bins=10)) - old
    assert np.allclose(errors, age_encoding.max_age(num_bins=10) - old, atol=1e-4)
    twelve = age_encoding.decode(age_encoding.encode(old)) - old  # the course's 12 bins
    worst = float(old[np.argmin(errors)])
    assert worst == ages.max() and errors.min() < twelve.min() - 10
    by_age = {int(age): round(float(errors[old == age][0]), 1) for age in np.unique(old)}
    return {
        "faces_over_90": len(old),
        "of_faces": len(ages),
        "error_by_age_years": by_age,
        "mean_error_years": round(float(errors.mean()), 2),
        "worst_error_years": round(float(errors.min()), 1),
        "worst_with_12_bins_years": round(float(twelve.min()), 1),
        "answer": (
            f"With 10 bins the last bin is 90 years, so each of the {len(old)} faces over 90 "
            f"decodes as exactly 90: the error is 90 minus the age (mean {errors.mean():.1f} "
            f"years). The oldest faces are hurt most: the {worst:.0f}-year-olds are "
            f"{-errors.min():.0f} years off, against {-twelve.min():.0f} with the course's 12 bins."
        ),
    }


def exercise_2(small_run: bool = True) -> dict[str, Any]:
    """Round-trip error of encode_gaussian for sigma = 3, 5 and 10 years: why does a narrow
    Gaussian look more like two-point, and where does it still fail?"""
    grid = np.arange(0.0, age_encoding.max_age() + 0.05, 0.1)  # the notebook's 0-110 grid
    interior = (grid >= 20) & (grid <= 90)  # two bins or more from both ends
    results = {}
    for sigma in SIGMAS:
        labels = age_encoding.encode_gaussian(grid, sigma=sigma)
        error = np.abs(age_encoding.decode(labels) - grid)
        results[f"sigma {sigma:g}"] = {
            "max_error_years": round(float(error.max()), 2),
            "max_error_at_age": round(float(grid[np.argmax(error)]), 1),
            "interior_max_error_years": round(float(error[interior].max()), 2),
            "end_max_error_years": round(float(error[~interior].max()), 2),
            "mass_on_two_nearest_bins": round(float(np.sort(labels)[:, -2:].sum(1).mean()), 3),
        }
    narrow, wide = results["sigma 3"], results["sigma 10"]
    assert narrow["mass_on_two_nearest_bins"] > 0.99 > wide["mass_on_two_nearest_bins"]
    assert narrow["interior_max_error_years"] > 10 * wide["interior_max_error_years"]
    assert wide["end_max_error_years"] > narrow["end_max_error_years"]
    return {
        "round_trip": results,
        "answer": (
            f"With sigma 3 almost all the mass ({narrow['mass_on_two_nearest_bins']:.1%}) sits on "
            "the two nearest bins, so the label looks like two-point and little mass falls off "
            "the ends. But the Gaussian weights do not fall linearly with the distance, so "
            "decoding pulls every age towards its nearest bin: it fails between the bins "
            f"(up to {narrow['interior_max_error_years']:.1f} years, e.g. at "
            f"{narrow['max_error_at_age']:g}), where sigma 10 errs only near the ends "
            f"({wide['end_max_error_years']:.1f} years at {wide['max_error_at_age']:g})."
        ),
    }


def _combination_shares(augmentation: pipeline.Augmentation) -> dict[str, float]:
    """How often a face gets contrast/brightness only, rotation only, both, neither; and a flip."""
    from c3ae_utils import pipeline

    flags = pipeline.draw(np.random.default_rng(SEED), DRAWN_FACES, augmentation)
    color, rotate = flags.color, flags.rotate
    return {
        "contrast only": float(np.mean(color & ~rotate)),
        "rotation only": float(np.mean(rotate & ~color)),
        "both": float(np.mean(color & rotate)),
        "neither": float(np.mean(~color & ~rotate)),
        "flip": float(np.mean(flags.flip)),
    }


def exercise_3(small_run: bool = True) -> dict[str, Any]:
    """With flip_probability=0, count with pipeline.draw how often a face gets contrast,
    rotation, both or neither, and compare with the reference's frequencies."""
    from c3ae_utils import pipeline  # imports TensorFlow: only the exercises that need it

    # The reference's flag 0..3: 1 and 3 contrast/brightness, 2 rotation, 0 nothing; never a flip.
    reference = {"contrast only": 0.5, "rotation only": 0.25, "both": 0.0, "neither": 0.25,
                 "flip": 0.0}
    closest = pipeline.Augmentation(flip_probability=0.0)  # colour 1/2 and rotation 1/4 already
    shares = {"default": _combination_shares(pipeline.Augmentation()),
              "flip_probability=0": _combination_shares(closest)}
    measured = shares["flip_probability=0"]
    expected = {"contrast only": 0.5 * 0.75, "rotation only": 0.25 * 0.5, "both": 0.5 * 0.25,
                "neither": 0.5 * 0.75, "flip": 0.0}
    assert all(abs(measured[key] - expected[key]) < 0.01 for key in expected)
    assert measured["both"] > 0.1 and measured["neither"] > reference["neither"]
    marginal = {"contrast": measured["contrast only"] + measured["both"],
                "rotation": measured["rotation only"] + measured["both"]}
    assert abs(marginal["contrast"] - 0.5) < 0.01 and abs(marginal["rotation"] - 0.25) < 0.01
    # The same faces through both settings: how many come out changed at all (erasing included).
    crops = pipeline.split_arrays(course.face_cache(DATASET, small_run), "train")[0][:64]
    changed = {}
    for name, setting in (("default", pipeline.Augmentation()), ("flip_probability=0", closest)):
        augmented = pipeline.augment_crops(crops, [SEED, 0], setting)
        changed[name] = float(np.mean(np.any(augmented != crops, axis=(1, 2, 3, 4))))
    return {
        "reference": reference,
        "shares": {name: {key: round(value, 3) for key, value in values.items()}
                   for name, values in shares.items()},
        "marginals_with_flip_off": {key: round(value, 3) for key, value in marginal.items()},
        "faces_changed_in_a_batch_of_64": {name: round(v, 3) for name, v in changed.items()},
        "answer": (
            "With flip_probability=0 each face still gets contrast/brightness half of the time and "
            "a rotation a quarter of the time, as in the reference, and never a flip (the default "
            "flips half the faces). But the draws are independent: "
            f"{measured['both']:.1%} of the faces get both (never in the reference) and "
            f"{measured['neither']:.1%} neither (25% in the reference)."
        ),
    }


def exercise_4(small_run: bool = True) -> dict[str, Any]:
    """Time pipeline.augment_crops with no transform and with each transform alone: which
    transform costs the most, and why might that be?"""
    from c3ae_utils import pipeline

    train_crops = pipeline.split_arrays(course.face_cache(DATASET, small_run), "train")[0]
    batch = np.ascontiguousarray(train_crops[np.arange(TIMED_FACES) % len(train_crops)])
    off = {probability: 0.0 for probability in TRANSFORMS.values()}
    settings = {"none": pipeline.Augmentation(**off)}
    settings.update({name: pipeline.Augmentation(**{**off, probability: 1.0})
                     for name, probability in TRANSFORMS.items()})
    settings["default"] = pipeline.Augmentation()
    pipeline.augment_crops(batch, [SEED, 0], settings["default"])  # compile / warm up
    milliseconds = {}
    for name, setting in settings.items():
        times = []
        for repeat in range(TIMED_REPEATS):
            started = time.perf_counter()
            pipeline.augment_crops(batch, [SEED, repeat], setting)
            times.append(time.perf_counter() - started)
        milliseconds[name] = round(1000 * min(times), 2)
    extra = {name: milliseconds[name] - milliseconds["none"] for name in TRANSFORMS}
    costliest = max(extra, key=extra.get)
    assert costliest == "rotation"
    assert extra["rotation"] > 2 * max(value for name, value in extra.items() if name != "rotation")
    faces_per_second = TIMED_FACES / (milliseconds["default"] / 1000)
    return {
        "faces_per_batch": TIMED_FACES,
        "ms_per_batch": milliseconds,
        "extra_ms_per_face": {name: round(value / TIMED_FACES, 4) for name, value in extra.items()},
        "default_faces_per_second": math.floor(faces_per_second),
        "costliest": costliest,
        "answer": (
            f"Rotation: {extra['rotation']:.1f} ms per {TIMED_FACES} faces on top of the copy, "
            f"against at most {max(v for k, v in extra.items() if k != 'rotation'):.1f} ms for "
            "the others. It resamples every pixel of the three crops (bilinear: four source "
            "pixels and fractional weights per output pixel, in cv2.remap), while a flip copies "
            "pixels in another order, recolouring is a table look-up and erasing touches only a "
            "small rectangle."
        ),
    }


def exercise_5(small_run: bool = True) -> dict[str, Any]:
    """With bins every 5 years (bin_width=5), how many bins cover UTKFace, and what happens to
    the imbalance plot?"""
    ages = _all_ages()
    width = 5
    num_bins = math.ceil(ages.max() / width) + 1  # the last bin value must reach the oldest age
    assert age_encoding.count_clipped(ages, num_bins, width) == 0
    assert age_encoding.count_clipped(ages, num_bins - 1, width) > 0
    cache_table = course.face_cache(DATASET, small_run).table
    train = {"face cache train split (the notebook's plot)":
             cache_table.loc[cache_table["split"] == "train", "age"].to_numpy(dtype=np.float64),
             "all train images (notebook 01's table)":
             course.metadata_table(DATASET).query("split == 'train'")["age"].to_numpy(np.float64)}
    imbalance = {}
    for name, train_ages in train.items():
        imbalance[name] = {}
        for bins, bin_width in ((age_encoding.NUM_BINS, age_encoding.BIN_WIDTH), (num_bins, width)):
            mass = age_encoding.encode(train_ages, bins, bin_width).sum(axis=0)
            imbalance[name][f"{bins} bins of {bin_width}"] = {
                "faces": len(train_ages),
                "heaviest_bin_share": round(float(mass.max() / mass.sum()), 3),
                "heaviest_over_lightest_non_empty":
                    round(float(mass.max() / mass[mass > 0].min()), 1),
                "empty_bins": int((mass == 0).sum()),
            }
    coarse, fine = imbalance["all train images (notebook 01's table)"].values()
    assert fine["heaviest_bin_share"] < coarse["heaviest_bin_share"]
    assert fine["heaviest_over_lightest_non_empty"] > coarse["heaviest_over_lightest_non_empty"]
    return {
        "oldest_face": int(ages.max()),
        "bins_needed": num_bins,
        "last_bin_years": age_encoding.max_age(num_bins, width),
        "clipped_with_one_bin_fewer": age_encoding.count_clipped(ages, num_bins - 1, width),
        "imbalance": imbalance,
        "answer": (
            f"{num_bins} bins (0, 5, ..., {age_encoding.max_age(num_bins, width):.0f} years) cover "
            f"UTKFace's oldest face, {ages.max():.0f}. The imbalance plot gets twice as many, "
            f"thinner bars: the heaviest bin holds {fine['heaviest_bin_share']:.0%} of the mass "
            f"instead of {coarse['heaviest_bin_share']:.0%}, but the rare old ages are spread over "
            "more bins, so the heaviest-to-lightest ratio grows from "
            f"{coarse['heaviest_over_lightest_non_empty']:.0f} to "
            f"{fine['heaviest_over_lightest_non_empty']:.0f} (and a small cache leaves more bins "
            "empty)."
        ),
    }


if __name__ == "__main__":
    sys.exit(solutions.main(sys.modules[__name__]))
