"""Worked solutions to the exercises of notebook 01 (Explore the data).

Inputs: notebook 01's metadata tables (`course.metadata_table`) and WIKI's raw metadata
(`datasets.load_metadata("wiki", clean=False)`, the `wiki.mat` file only: no images needed).

    python -m solutions.ex01_explore_the_data        # every exercise
    python -m solutions.ex01_explore_the_data 2 4    # exercises 2 and 4
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np
import pandas as pd

import solutions
from c3ae_utils import age_encoding, course, datasets

SEED = 0  # the notebook's SEED: the saved tables were split with it
OTHER_SEED = 1
VAL_FRACTION = TEST_FRACTION = 0.15  # the notebook's defaults
MATLAB_DATENUM_OF_1970 = 719_529  # MATLAB datenum of 1970-01-01 (datenum 1 = 1 January of year 0)


@functools.lru_cache(maxsize=1)
def _raw_wiki() -> pd.DataFrame:
    """WIKI's uncleaned metadata table (read once per process: about 2 s)."""
    return datasets.load_metadata("wiki", clean=False)


def _tables() -> dict[str, pd.DataFrame]:
    """Notebook 01's saved tables (with the `split` it made with SEED)."""
    return {name: course.metadata_table(name) for name in ("utkface", "fgnet", "wiki")}


def exercise_1(small_run: bool = True) -> dict[str, Any]:
    """Change SEED and rerun the split section: which numbers change, which stay the same, and
    why do the per-decade shares stay at 15%?"""
    counts, changed, worst_share = {}, {}, {}
    for name, table in _tables().items():
        before = datasets.protocol_split(table, name, seed=SEED, val_fraction=VAL_FRACTION,
                                         test_fraction=TEST_FRACTION)
        assert (before.astype(str).to_numpy() == table["split"].astype(str).to_numpy()).all()
        after = datasets.protocol_split(table, name, seed=OTHER_SEED, val_fraction=VAL_FRACTION,
                                        test_fraction=TEST_FRACTION)
        counts[name] = {f"seed {seed}": {split: int(n)
                                         for split, n in labels.value_counts().items()}
                        for seed, labels in ((SEED, before), (OTHER_SEED, after))}
        changed[name] = round(float((before != after).mean()), 3)
        # The counts per split are the same whatever the seed; only the members change.
        assert counts[name][f"seed {SEED}"] == counts[name][f"seed {OTHER_SEED}"]
        if name != "fgnet":
            shares = pd.crosstab(age_encoding.decade(table["age"]), after.to_numpy(),
                                 normalize="index")
            worst_share[name] = round(float((shares[["val", "test"]] - 0.15).abs().max().max()), 4)
            decade_sizes = pd.Series(age_encoding.decade(table["age"])).value_counts()
            # Each decade rounds 15% of its own size, so a share is off by at most half a face.
            assert worst_share[name] <= 0.5 / decade_sizes.min() + 1e-9
    assert changed["fgnet"] == 0.0 and changed["utkface"] > 0.3 and changed["wiki"] > 0.3
    return {
        "split_counts": counts,
        "fraction_of_rows_that_change_split": changed,
        "largest_per_decade_share_deviation_from_15%": worst_share,
        "answer": (
            f"With seed {OTHER_SEED} the split sizes stay exactly the same, but "
            f"{changed['utkface']:.0%} of UTKFace's and {changed['wiki']:.0%} of WIKI's rows land "
            "in another split (FG-NET stays all train: its LOSO folds do not use the seed). "
            "The seed only shuffles the members within each age decade; the number sent to val and "
            "test is round(15% x decade size), decided per decade, so every decade keeps its 15% "
            f"share (at most {max(worst_share.values()):.1%} off, from rounding small decades)."
        ),
    }


def exercise_2(small_run: bool = True) -> dict[str, Any]:
    """Relax the WIKI clean-up to keep photos with a second face whose second_face_score is
    below 1: how many images do you gain? Look at a few of them."""
    raw = _raw_wiki()
    second_face = "second face (second_face_score not NaN)"
    assert second_face in dict(datasets.CLEANING_STEPS)
    drop = pd.Series(False, index=raw.index)
    for label, rule in datasets.CLEANING_STEPS:
        mask = rule(raw).fillna(False).astype(bool)
        if label == second_face:  # relaxed: only a confident second face (score >= 1) drops
            mask = raw["second_face_score"] >= 1
        drop |= mask
    relaxed = raw.loc[~drop]
    strict = datasets.clean_imdb_wiki(raw)
    gained = relaxed[~relaxed["entry"].isin(strict["entry"])]
    assert set(strict["entry"]) <= set(relaxed["entry"])
    assert len(relaxed) == len(strict) + len(gained) and len(gained) > 0
    assert (gained["second_face_score"] < 1).all()
    examples = gained.sort_values("second_face_score").iloc[:: max(1, len(gained) // 5)].head(5)
    return {
        "kept_standard": len(strict),
        "kept_relaxed": len(relaxed),
        "gained": len(gained),
        "gained_percent": round(100.0 * len(gained) / len(strict), 1),
        "gained_second_face_score_quartiles": [
            round(float(q), 2) for q in gained["second_face_score"].quantile([0.25, 0.5, 0.75])
        ],
        "examples": [
            {"name": str(row["name"]), "age": int(row["age"]),
             "face_score": round(float(row["face_score"]), 2),
             "second_face_score": round(float(row["second_face_score"]), 2),
             "image": str(row["path"]).split("/wiki_crop/")[-1]}
            for _, row in examples.iterrows()
        ],
        "images_on_disk": int(gained["image_available"].sum()),
        "answer": (
            f"Keeping weak second faces adds {len(gained):,} photos "
            f"({len(gained) / len(strict):.1%} more than the standard {len(strict):,}). Each has a "
            "second detected face (the middle half score "
            f"{gained['second_face_score'].quantile(0.25):.2f}-"
            f"{gained['second_face_score'].quantile(0.75):.2f}): in wiki_crop/ (once downloaded) "
            "the age label may belong to the other person, which is why the standard clean-up "
            "drops them all."
        ),
    }


def exercise_3(small_run: bool = True) -> dict[str, Any]:
    """Using summarize, compare FG-NET's age distribution to UTKFace's restricted to ages 0-69:
    would a model trained on UTKFace be a fair starting point for FG-NET?"""
    tables = _tables()
    utkface = tables["utkface"]
    compared = {"fgnet": tables["fgnet"], "utkface 0-69": utkface[utkface["age"] <= 69]}
    summary = datasets.summarize(compared)
    decades = datasets.age_bin_counts(compared, num_bins=7)  # 0-9, ..., 60-69
    shares = (decades / decades.sum()).round(3)
    under_20 = {name: int((table["age"] < 20).sum()) for name, table in compared.items()}
    median = {name: float(summary.loc[name, "median age"]) for name in compared}
    assert median["fgnet"] < median["utkface 0-69"]
    assert under_20["utkface 0-69"] > under_20["fgnet"]
    share_under_20 = {name: round(float(shares.loc[["0-9", "10-19"], name].sum()), 3)
                      for name in compared}
    return {
        "images": {name: int(summary.loc[name, "images"]) for name in compared},
        "median_age": median,
        "share_per_decade": {name: shares[name].tolist() for name in compared},
        "decades": shares.index.tolist(),
        "faces_under_20": under_20,
        "share_under_20": share_under_20,
        "answer": (
            f"FG-NET is young (median {median['fgnet']:.0f} years, {share_under_20['fgnet']:.0%} "
            f"under 20) while UTKFace 0-69 centres on adults (median "
            f"{median['utkface 0-69']:.0f}, {share_under_20['utkface 0-69']:.0%} under 20). "
            f"Still, UTKFace has {under_20['utkface 0-69']:,} faces under 20, more than FG-NET "
            "has photos, over the same 0-69 range: a fair starting point whose errors will lean "
            "towards adult ages, so it should be fine-tuned on FG-NET (notebook 06)."
        ),
    }


def _matlab_datenum(dates: np.ndarray) -> np.ndarray:
    """MATLAB serial day numbers (int64) of `datetime64` dates (inverse of `datenum_to_date`)."""
    days = np.asarray(dates, dtype="datetime64[D]") - np.datetime64("1970-01-01", "D")
    return days.astype(np.int64) + MATLAB_DATENUM_OF_1970


def exercise_4(small_run: bool = True) -> dict[str, Any]:
    """Compute WIKI ages with the official one-liner datevec(datenum(photo_taken, 7, 1) - dob)
    (its year field) and compare them with datasets.age_at_mid_year: where do they differ?"""
    raw = _raw_wiki()
    birth = raw["dob"].to_numpy().astype("datetime64[D]")
    taken = raw["photo_taken"].to_numpy()
    july_first = np.array([f"{year:04d}-07-01" for year in taken], dtype="datetime64[D]")
    elapsed = _matlab_datenum(july_first) - _matlab_datenum(birth)  # datenum(taken, 7, 1) - dob
    # datevec's year field: the year of the date whose serial number is `elapsed`.
    one_liner = datasets.datenum_to_date(elapsed).astype("datetime64[Y]").astype(np.int64) + 1970
    mid_year = datasets.age_at_mid_year(birth, taken)
    assert (mid_year == raw["age"].to_numpy()).all()
    differ = one_liner != mid_year
    birthdays = pd.Series(birth[differ]).dt.strftime("%m-%d").value_counts()
    birthday = pd.Series(birth).dt.strftime("%m-%d").to_numpy()
    assert differ.any() and set(birthdays.index) <= {"06-30", "07-01"}
    assert birthdays["07-01"] == (birthday == "07-01").sum()  # every 1 July birthday differs
    assert set(np.unique(one_liner[differ] - mid_year[differ])) == {-1}
    kept = datasets.clean_imdb_wiki(raw)["entry"].to_numpy()
    return {
        "entries": len(raw),
        "differ": int(differ.sum()),
        "differ_after_cleaning": int(differ[kept].sum()),
        "differ_by_birthday": {day: int(n) for day, n in birthdays.items()},
        "born_on_1_july": int((birthday == "07-01").sum()),
        "born_on_30_june": int((birthday == "06-30").sum()),
        "one_liner_minus_mid_year": -1,
        "examples": [
            {"dob": str(row["dob"].date()), "photo_taken": int(row["photo_taken"]),
             "mid_year": int(row["age"]), "one_liner": int(value)}
            for (_, row), value in zip(raw[differ].head(3).iterrows(), one_liner[differ][:3],
                                       strict=False)
        ],
        "answer": (
            f"They agree on all but {differ.sum()} of {len(raw):,} entries, where the one-liner "
            f"gives one year less: everyone born on 1 July ({birthdays.get('07-01', 0)} of "
            f"{(birthday == '07-01').sum()}) and some born on 30 June "
            f"({birthdays.get('06-30', 0)} of {(birthday == '06-30').sum()}). datevec reads the "
            "elapsed days as a date counted from 1 January of year 0 (datenum 1, a leap year), "
            "so exactly N years of days end on 31 December of year N-1 unless the span holds "
            "more leap days than years 0 to N-1 do."
        ),
    }


if __name__ == "__main__":
    sys.exit(solutions.main(sys.modules[__name__]))
