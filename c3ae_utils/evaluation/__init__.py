"""Error analysis: predictions, MAE, cumulative score, grouped errors, FG-NET, the results table.

    python -m c3ae_utils.evaluation results   # `make results`: artifacts/results.{md,csv} + docs/results.md

Vocabulary:

- MAE (mean absolute error): mean of |predicted age - true age|, in years.
- CS(theta) (cumulative score): the fraction of faces whose absolute error is at most
  `theta` years, for theta = 0, 1, ..., 10. It rises with theta and ends at most at 1.
- Bias: the mean *signed* error (predicted - true). A model that regresses to the mean
  has positive bias for the young and negative bias for the old.
- W1 / W2: C3AE's two heads. W1 = Dense(12, softmax) gives the distribution over the bins
  0, 10, ..., 110; W2 = Dense(1) maps that distribution to the age. The paper's reasoning
  says W2 should equal the bin values; the reference learns it. `w2_comparison` reads it.

Every model is read through its two outputs: `age` (the W2 head, "predicted age") and
`distribution`, whose expectation over the bin values is the "expected age".

The modules, each importing only those before it:

| module | what for |
| --- | --- |
| `metrics` | pure metrics of ages: `mean_absolute_error`, `cumulative_score`, `bias_slope`, `bin_confusion`, `grouped_errors` by `age_groups` / `pose_groups` |
| `model_evaluation` | `evaluate` (a model, run or weights file on a cache) -> `Evaluation`; `prediction_table`, `summarize`, `w2_comparison` |
| `loso` | `loso_result` -> `LosoResult`: FG-NET leave-one-subject-out, measured |
| `results` | the results table (`write_results`, `make results`) and its command line |

This package re-exports their public names, so `evaluation.evaluate(...)` is all a caller needs.
It measures and never trains.
"""

from __future__ import annotations

from c3ae_utils.evaluation.loso import LosoResult, loso_result
from c3ae_utils.evaluation.metrics import (
    POSE_EDGES,
    THETAS,
    age_groups,
    bias_slope,
    bin_confusion,
    cumulative_score,
    dominant_bins,
    grouped_errors,
    mean_absolute_error,
    pose_groups,
)
from c3ae_utils.evaluation.model_evaluation import (
    Evaluation,
    distribution_columns,
    evaluate,
    prediction_table,
    summarize,
    w2_comparison,
)
from c3ae_utils.evaluation.results import (
    PAGE_END,
    PAGE_START,
    PUBLISHED,
    SETTING_KEYS,
    aggregate_seeds,
    build_parser,
    fgnet_rows_from_notebook,
    find_runs,
    main,
    refresh_page,
    results_markdown,
    results_page,
    results_rows,
    write_results,
)

__all__ = [
    # metrics
    "THETAS", "POSE_EDGES", "mean_absolute_error", "cumulative_score", "age_groups", "pose_groups",
    "grouped_errors", "bias_slope", "dominant_bins", "bin_confusion",
    # model_evaluation
    "Evaluation", "evaluate", "distribution_columns", "prediction_table", "summarize", "w2_comparison",
    # loso
    "LosoResult", "loso_result",
    # results
    "SETTING_KEYS", "PAGE_START", "PAGE_END", "PUBLISHED", "results_page", "find_runs", "results_rows",
    "aggregate_seeds", "results_markdown", "fgnet_rows_from_notebook", "refresh_page", "write_results",
    # command line
    "build_parser", "main",
]
