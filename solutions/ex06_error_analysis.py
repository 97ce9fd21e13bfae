"""Worked solutions to the exercises of notebook 06 (error analysis).

    python -m solutions.ex06_error_analysis [numbers] [--full]

Every solution reads notebook 05's two runs (`course.trained_run`) and notebook 02's face caches
(`course.face_cache`) for the same SMALL_RUN, and evaluates them with the notebook's calls.
Exercise 4 also reads the LOSO folds notebook 06 recorded (`course.recorded("error_analysis")`)
and runs them again only when they were recorded for another SMALL_RUN.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd

import solutions
from c3ae_utils import course, evaluation, training

DATASET = "utkface"  # the notebook's DATASET
SPLIT = "test"  # the notebook's SPLIT
LEARNING_RATE = 0.0002  # the notebook's LEARNING_RATE (LOSO fine-tuning)
NUM_WORST = 12  # the notebook's NUM_WORST
SEED = 0  # the notebook's SEED


def _evaluation(loss_or_weights: str, small_run: bool, split: str = SPLIT) -> evaluation.Evaluation:
    """A run of notebook 05 (by its loss) or reference weights (by label) on a split of the
    cache, as notebook 06 evaluates them."""
    cache = course.face_cache(DATASET, small_run)
    if loss_or_weights in course.COURSE_LOSSES:
        model: Any = course.trained_run(loss_or_weights, small_run, DATASET)
    else:
        model = loss_or_weights
    return evaluation.evaluate(model, cache, split=split, name=loss_or_weights)


def exercise_1(small_run: bool = True) -> dict[str, Any]:
    """Evaluate the runs on `SPLIT = "val"` too: how much lower is the validation MAE than the
    test MAE, and why is that expected for the split that picked `best.keras`?"""
    result: dict[str, Any] = {}
    for loss in course.COURSE_LOSSES:
        run = course.trained_run(loss, small_run, DATASET)
        val, test = _evaluation(loss, small_run, "val"), _evaluation(loss, small_run, "test")
        # evaluate() on "val" reproduces what training measured on the split that chose best.keras,
        assert val.metrics["count"] == run.metrics["val_samples"]
        assert abs(val.mae - run.metrics["val_mae"]) < 1e-3, (val.mae, run.metrics["val_mae"])
        # and best.keras is the epoch with the lowest validation MAE of all epochs.
        per_epoch = run.history["val_age_mae"].to_numpy(dtype=float)
        assert val.mae <= per_epoch.min() + 1e-2, (val.mae, per_epoch.min())
        errors = test.table["abs_error"]
        result[loss] = {
            "val_faces": val.metrics["count"], "test_faces": test.metrics["count"],
            "val_mae": round(val.mae, 3), "test_mae": round(test.mae, 3),
            "test_minus_val": round(test.mae - val.mae, 3),
            "test_mae_standard_error": round(float(errors.std() / np.sqrt(len(errors))), 3),
            "best_epoch": run.metrics["best_epoch"], "epochs": int(len(per_epoch)),
            "median_val_mae_over_epochs": round(float(np.median(per_epoch)), 3),
        }
    runs = {loss: result[loss] for loss in course.COURSE_LOSSES}
    gaps = ", ".join(f"{loss} {values['test_minus_val']:+.2f}" for loss, values in runs.items())
    error = max(values["test_mae_standard_error"] for values in runs.values())
    largest_gap = max(abs(values["test_minus_val"]) for values in runs.values())
    lower = [loss for loss, values in runs.items() if values["test_minus_val"] > 0]
    which = "both runs" if len(lower) == len(runs) else ", ".join(lower) or "neither run"
    faces = runs["focal"]["test_faces"]
    result["answer"] = (
        f"Test MAE minus validation MAE: {gaps} years, so the validation MAE is lower for {which}. "
        "Expected: best.keras is the epoch with the lowest MAE on the validation faces, chosen on "
        "those very faces, so its validation MAE is an optimistic estimate, while the test faces "
        f"played no part in training or in the choice. With {faces} faces per split the test MAE "
        f"itself has a standard error of up to {error:.1f} years, "
        + ("larger than the gaps: a few faces more or less could change them."
           if error > largest_gap else "smaller than the largest gap.")
    )
    return result


def exercise_2(small_run: bool = True) -> dict[str, Any]:
    """The MAE per decade of age of both runs, where the focal loss beats cross-entropy, and
    whether it helps most where training faces are scarce."""
    focal, ce = _evaluation("focal", small_run), _evaluation("ce", small_run)
    assert focal.table["cache_index"].equals(ce.table["cache_index"]), "both runs on the same faces"
    per_run = {
        name: evaluation.grouped_errors(result.table, evaluation.age_groups(result.table["age"]))
        for name, result in (("focal", focal), ("ce", ce))
    }
    cache = course.face_cache(DATASET, small_run)
    train_ages = cache.table.loc[cache.table["split"] == "train", "age"]
    train_counts = pd.Series(evaluation.age_groups(train_ages)).value_counts()
    table = pd.DataFrame({
        "test_faces": per_run["focal"]["count"],
        "train_faces": train_counts.reindex(per_run["focal"].index, fill_value=0).to_numpy(),
        "mae_focal": per_run["focal"]["mae"], "mae_ce": per_run["ce"]["mae"],
    })
    table["focal_gain"] = table["mae_ce"] - table["mae_focal"]  # > 0: focal is better there
    assert table["test_faces"].sum() == focal.metrics["count"] == ce.metrics["count"]
    assert (per_run["focal"]["count"] == per_run["ce"]["count"]).all()
    assert int(train_counts.sum()) == len(train_ages)
    scarce = table["train_faces"] < table["train_faces"].median()
    gain_scarce = float(table.loc[scarce, "focal_gain"].mean())
    gain_common = float(table.loc[~scarce, "focal_gain"].mean())
    wins = [str(decade) for decade in table.index[table["focal_gain"] > 0]]
    helps_scarce = gain_scarce > gain_common
    return {
        "decades": [str(decade) for decade in table.index],
        "test_faces": table["test_faces"].astype(int).tolist(),
        "train_faces": table["train_faces"].astype(int).tolist(),
        "mae_focal": table["mae_focal"].round(2).tolist(),
        "mae_ce": table["mae_ce"].round(2).tolist(),
        "focal_better_in": wins,
        "mean_focal_gain_scarce_decades": round(gain_scarce, 2),
        "mean_focal_gain_common_decades": round(gain_common, 2),
        "answer": (
            f"The focal loss has the lower MAE in the decades {', '.join(wins) or 'none'}. "
            "Averaged over the decades with fewer training faces than the median it gains "
            f"{gain_scarce:+.2f} years over cross-entropy, against {gain_common:+.2f} in the "
            f"well-filled ones, so here it {'does' if helps_scarce else 'does not'} help most "
            "where training faces are scarce (the bins its class-balanced weights favour). With "
            f"{int(table['test_faces'].sum())} test faces, most decades hold a handful of faces "
            f"(as few as {int(table['test_faces'].min())}), so each decade's MAE is noisy."
        ),
    }


def exercise_3(small_run: bool = True) -> dict[str, Any]:
    """Read the expected age (`expected_age`) instead of the `age` head for the run whose W2 moved
    most. Which reading has the lower MAE for people over 60?"""
    evaluations = {loss: _evaluation(loss, small_run) for loss in course.COURSE_LOSSES}
    moved = {loss: result.metrics["w2"]["max_abs_difference"]
             for loss, result in evaluations.items()}
    loss = max(moved, key=moved.get)
    table = evaluations[loss].table
    old = table[table["age"] > 60]
    assert len(old) > 0, f"no face over 60 in the {SPLIT} split"
    assert np.allclose(old["abs_error"], (old["predicted_age"] - old["age"]).abs())
    mae_head = evaluation.mean_absolute_error(old["age"], old["predicted_age"])
    mae_expected = evaluation.mean_absolute_error(old["age"], old["expected_age"])
    apart = float((old["predicted_age"] - old["expected_age"]).abs().max())
    winner = "the expected age" if mae_expected < mae_head else "the age head"
    return {
        "run": loss,
        "max_abs_w2_difference": {name: round(value, 3) for name, value in moved.items()},
        "faces_over_60": int(len(old)),
        "mae_over_60_age_head": round(mae_head, 2),
        "mae_over_60_expected_age": round(mae_expected, 2),
        "max_difference_of_the_readings_over_60": round(apart, 3),
        "mae_all_age_head": round(float(table["abs_error"].mean()), 2),
        "mae_all_expected_age": round(
            evaluation.mean_absolute_error(table["age"], table["expected_age"]), 2),
        "answer": (
            f"W2 moved most in the {loss} run (up to {moved[loss]:.2f} years from the bin values). "
            f"For its {len(old)} faces over 60 the age head has MAE {mae_head:.2f} and the "
            f"expected age {mae_expected:.2f} years, so {winner} is the better reading for the old "
            f"here. The two readings differ by at most {apart:.2f} years on these faces: W2 starts "
            "at the bin values, and the further training moves it, the more the readings can part."
        ),
    }


def _loso_folds(run: training.Run, small_run: bool, learning_rate: float, epochs: int,
                num_folds: int | None) -> pd.DataFrame:
    """Notebook 06's LOSO fine-tuning of `run` with other settings: one row per fold."""
    size = course.size(small_run)
    fgnet = course.face_cache("fgnet", small_run)
    fine_tuned = training.leave_one_subject_out(
        run, fgnet, num_folds=num_folds, epochs=epochs, batch_size=size.fine_tune_batch_size,
        learning_rate=learning_rate, loss=run.config.loss, seed=SEED,
    )
    folds = evaluation.loso_result(fine_tuned, fgnet).folds
    assert ((folds["n_test"] + folds["n_train"]) == len(fgnet.table)).all()
    return folds


def _notebook_loso(small_run: bool, num_folds: int | None) -> tuple[training.Run, pd.DataFrame]:
    """The run notebook 06 fine-tuned (the one with the lower test MAE) and its LOSO folds at the
    notebook's settings: as notebook 06 recorded them, or run again (on `num_folds` folds) when
    they were recorded for another SMALL_RUN."""
    size = course.size(small_run)
    try:
        recorded = course.recorded("error_analysis")
    except FileNotFoundError:
        recorded = {}
    parameters, loso = recorded.get("parameters", {}), recorded.get("loso", {})
    notebook = {"SMALL_RUN": small_run, "DATASET": DATASET, "SPLIT": SPLIT, "SEED": SEED,
                "NUM_FOLDS": size.num_folds, "FINE_TUNE_EPOCHS": size.fine_tune_epochs}
    if all(parameters.get(key) == value for key, value in notebook.items()) \
            and loso.get("learning_rate") == LEARNING_RATE:
        run = course.trained_run(recorded["best_loss"], small_run, DATASET)
        if loso.get("model") == run.name:
            return run, pd.DataFrame(loso["folds"])
    best_loss = min(course.COURSE_LOSSES, key=lambda loss: _evaluation(loss, small_run).mae)
    run = course.trained_run(best_loss, small_run, DATASET)
    return run, _loso_folds(run, small_run, LEARNING_RATE, size.fine_tune_epochs, num_folds)


def exercise_4(small_run: bool = True) -> dict[str, Any]:
    """Re-run the LOSO fine-tuning with another `learning_rate` and `epochs`. When does
    fine-tuning start to hurt (compare `mae_before` with `mae` per fold)?"""
    size = course.size(small_run)
    # The notebook's folds when small; 10 of FG-NET's 82 subjects for the full course's settings.
    num_folds = size.num_folds if small_run else 10
    epochs = size.fine_tune_epochs
    run, notebook = _notebook_loso(small_run, num_folds)
    settings = [(LEARNING_RATE * 50, epochs)]
    if not small_run:
        settings += [(LEARNING_RATE, epochs * 3), (LEARNING_RATE * 50, epochs * 3)]
    table = None
    for learning_rate, setting_epochs in settings:
        folds = _loso_folds(run, small_run, learning_rate, setting_epochs, num_folds)
        merged = folds.merge(notebook[["subject", "mae_before", "mae"]], on="subject",
                             suffixes=("", "_notebook"))
        # The same held-out subjects (all of them in the notebook's folds), the same start.
        assert len(merged) == len(folds) > 0
        assert np.allclose(merged["mae_before"], merged["mae_before_notebook"], atol=1e-3)
        if table is None:
            table = merged[["subject", "n_test", "mae_before"]].assign(
                **{f"lr {LEARNING_RATE:g}, {epochs} epochs": merged["mae_notebook"]})
        table[f"lr {learning_rate:g}, {setting_epochs} epochs"] = merged["mae"].to_numpy()
    assert table is not None
    columns = [column for column in table if column.startswith("lr ")]
    hurt = {column: int((table[column] > table["mae_before"]).sum()) for column in columns}
    means = {column: round(float(table[column].mean()), 2) for column in columns}
    best = min(means, key=means.get)
    before = table["mae_before"]
    hurt_rows = (table[columns].to_numpy() > before.to_numpy()[:, None]).any(axis=1)
    if hurt_rows.all():
        where = ("Every fold lost accuracy: these settings move the weights away from what "
                 "UTKFace taught faster than the other FG-NET subjects teach anything useful.")
    elif hurt_rows.any():
        hurt_before, helped_before = before[hurt_rows].mean(), before[~hurt_rows].mean()
        where = (f"Where it hurt, the model started {hurt_before:.1f} years off on average, "
                 f"against {helped_before:.1f} in the folds every setting improved"
                 + (": fine-tuning hurts a person the model already gets nearly right, where a "
                    "large step can only move the weights away from what worked."
                    if hurt_before < helped_before else
                    ": the starting error alone does not say which person a setting will hurt."))
    else:
        where = (f"No setting hurt a fold here: the UTKFace model starts {before.min():.1f}-"
                 f"{before.max():.1f} years off on these FG-NET subjects, so there is much to "
                 "gain, and the larger step gains it faster. Fine-tuning starts to hurt where "
                 "the model already gets a person right (a small mae_before): then any step is a "
                 "step away.")
    return {
        "run": run.name,
        "folds": table.round(2).to_dict(orient="records"),
        "mean_mae_before": round(float(before.mean()), 2),
        "mean_mae": means,
        "folds_hurt": hurt,
        "answer": (
            f"Mean MAE of the {len(table)} held-out subjects: {before.mean():.2f} years before "
            "fine-tuning; after it "
            + "; ".join(f"{column}: {value:.2f}" for column, value in means.items())
            + f" (best: {best}). Fine-tuning hurt (mae > mae_before) "
            + ", ".join(f"{count} of {len(table)} folds with {column}"
                        for column, count in hurt.items()) + f". {where}"
        ),
    }


def exercise_5(small_run: bool = True) -> dict[str, Any]:
    """Look at the worst predictions of the reference v89 model (`reference[...].worst()`): are
    they the same faces as for our runs?"""
    reference = _evaluation("reference-v89", small_run)
    faces = reference.metrics["count"]
    count = min(NUM_WORST, faces // 2)
    worst_reference = reference.worst(count)
    mean_age_worst = {"reference-v89": round(float(worst_reference["age"].mean()), 1)}
    overlaps = {}
    for loss in course.COURSE_LOSSES:
        ours = _evaluation(loss, small_run)
        assert ours.table["cache_index"].equals(reference.table["cache_index"])
        worst_ours = ours.worst(count)
        assert worst_ours["cache_index"].nunique() == count
        assert worst_reference["cache_index"].nunique() == count
        overlaps[loss] = len(set(worst_ours["cache_index"]) & set(worst_reference["cache_index"]))
        mean_age_worst[loss] = round(float(worst_ours["age"].mean()), 1)
    chance = count * count / faces
    mean_age_all = float(reference.table["age"].mean())
    shared = ", ".join(f"{loss} {number}" for loss, number in overlaps.items())
    ours_ages = ", ".join(f"{loss} {mean_age_worst[loss]:.1f}" for loss in overlaps)
    return {
        "faces": faces, "num_worst": count, "chance_overlap": round(chance, 2),
        "reference_mae": round(reference.mae, 2),
        "overlap_with_reference": overlaps,
        "mean_age_worst": mean_age_worst, "mean_age_all": round(mean_age_all, 1),
        "answer": (
            f"Of the {count} worst faces of reference v89, our runs share {shared} (chance alone: "
            f"{chance:.1f} of {faces} faces). The overlap above chance is the faces that are hard "
            "for any model (label noise, unusual faces or photos); the rest are each model's own "
            f"mistakes. The worst faces are {mean_age_worst['reference-v89']:.1f} years old on "
            f"average for the reference ({ours_ages}), "
            f"against {mean_age_all:.1f} for all {faces} faces."
        ),
    }


if __name__ == "__main__":
    sys.exit(solutions.main(sys.modules[__name__]))
