"""FG-NET's leave-one-subject-out protocol, measured: `loso_result` turns the predictions of
`training.leave_one_subject_out` into per-fold MAE before and after fine-tuning (`LosoResult`).
It measures and never trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from c3ae_utils import faces, training
from c3ae_utils.evaluation.metrics import mean_absolute_error
from c3ae_utils.evaluation.model_evaluation import prediction_table


@dataclass
class LosoResult:
    """Leave-one-subject-out on FG-NET: one row per fold in `folds` (subject, counts, MAE
    before and after fine-tuning, years) and every test face in `predictions`."""

    folds: pd.DataFrame
    predictions: pd.DataFrame
    settings: dict[str, Any]

    @property
    def mean_mae(self) -> float:
        """Mean over folds of the per-fold MAE after fine-tuning (the paper's FG-NET number)."""
        return float(self.folds["mae"].mean())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            **self.settings,
            "num_folds": int(len(self.folds)),
            "mean_mae": self.mean_mae,
            "mean_mae_before": float(self.folds["mae_before"].mean()),
            "face_mae": mean_absolute_error(self.predictions["age"], self.predictions["predicted_age"]),
            "folds": self.folds.to_dict(orient="records"),
        }


def loso_result(fine_tuned: training.LosoRun, cache: faces.FaceCache | str | Path) -> LosoResult:
    """Measure a leave-one-subject-out run (`training.leave_one_subject_out`) on the faces of
    `cache` it was fine-tuned on: per-fold MAE before and after fine-tuning, and the
    prediction table of every held-out face (with a `fold` column)."""
    table = faces.load_cache(cache).table
    rows, predictions = [], []
    for number, fold in enumerate(fine_tuned.folds):
        true = table["age"].to_numpy(dtype=np.float64)[fold.test]
        fold_table = prediction_table(table, fold.test, fold.ages, fold.distributions)
        fold_table["fold"] = number
        predictions.append(fold_table)
        rows.append({
            "fold": number, "subject": fold.subject, "n_test": int(fold.test.size), "n_train": fold.n_train,
            "mae_before": mean_absolute_error(true, fold.ages_before),
            "mae": mean_absolute_error(true, fold.ages),
            "mae_expected": mean_absolute_error(true, fold_table["expected_age"]),
        })
    return LosoResult(pd.DataFrame(rows), pd.concat(predictions, ignore_index=True), dict(fine_tuned.settings))
