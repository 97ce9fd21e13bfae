"""Training C3AE: the cascade loss, compile, callbacks, `model.fit`, and run folders that resume.

    python -m c3ae_utils.training --dataset utkface --loss focal --epochs 30   # = c3ae train ...

The cascade loss of C3AE (Zhang et al. 2019) trains both heads at once::

    total = L1(age) + lambda * distribution_loss(distribution),   lambda = 10 by default

where the distribution loss compares the softmax output of W1 with the two-point target
(`age_encoding.encode`) and is either

- `"kl"`: the Kullback-Leibler divergence KL(target || prediction), as in the paper;
- `"ce"`: the cross-entropy, which differs from KL only by the target's entropy (a constant
  per sample, so the gradients are identical);
- `"focal"`: the class-balanced focal loss of the reference implementation (`BalancedFocalLoss`).

The losses and metrics themselves live in `c3ae_utils.losses` (re-exported here).

`train(TrainConfig(...))` writes everything a run produces into `paths.runs_dir()/<run_name>/`:

| file | content |
| --- | --- |
| `config.json` | every setting of `TrainConfig`, with the cache and run names resolved, and `cache_sha256`: the fingerprint of the faces it trains on |
| `history.csv` | one row per epoch: losses, `age_mae`, `val_age_mae`, ..., `learning_rate`, `seconds` |
| `best.keras` | the model of the epoch with the lowest validation age MAE (the last epoch with `train_on_val`) |
| `last.keras` | the model and its optimizer state after the last finished epoch |
| `resume.json` | the epoch reached, the state of the callbacks and the SHA-256 of its `last.keras`, for `resume=True`; `failed` (epoch, reason) for a run that diverged |
| `metrics.json` | validation MAE of `best.keras` (`val_mae`: age head; `val_expected_mae`: expectation over the bins), `best_epoch`, `epochs`, `seconds`, training samples/s (overall and after epoch 1), `val_trained_on` |
| `predictions.parquet` | validation rows: `path`, `age`, `predicted_age`, `expected_age`, `p00`..`p11` |
| `tensorboard/` | TensorBoard logs (`tensorboard --logdir <run>/tensorboard`) |
| `.lock` | locked by the process training the run (one at a time; the lock ends with the process) |

Every JSON file is strict JSON (no NaN or infinity). A run whose loss becomes NaN or infinite,
or whose validation age MAE rises above the age range of the bins (110 years), diverged: it is
recorded as failed (`resume.json`), `train` raises `RunFailed` (`c3ae train`: one line, exit 1),
and the run is never resumed, loaded or used as weights; train it again with `overwrite=True`
and other settings. Resume refuses a face cache whose faces, ages or splits changed.

An interrupted run continues from `last.keras` at the next epoch with `resume=True`, and ends
with the same weights and metrics as an uninterrupted one (the protocol: `runs`).

The modules, each importing only those before it:

| module        | what for                                                                    |
| ------------- | --------------------------------------------------------------------------- |
| `config`      | `TrainConfig` (every setting of a run), `default_run_name`, `check_run_name` |
| `runs`        | run folders: `run_dir`, `Run`, `load_run`, `RunFailed`; the resume protocol, the lock, the cache fingerprint |
| `compilation` | `compile_model` (Adam and the cascade loss), `learning_rate_schedule`        |
| `callbacks`   | `make_callbacks`: `EpochClock`, early stopping, `RunRecorder` (saves epochs, records `divergence`) |
| `fit`         | `train(config) -> Run`                                                        |
| `loso`        | FG-NET leave-one-subject-out fine-tuning: `leave_one_subject_out -> LosoRun` |
| `command`     | `build_parser`, `main`: `c3ae train` and `python -m c3ae_utils.training`     |

TensorFlow (and the tf.data `pipeline`) is imported only inside `train` and
`leave_one_subject_out`, so the losses, metrics and `compile_model` also work on Keras' JAX
backend (used by `bench/bench_train.py` on GPU machines without TensorFlow).
"""

from __future__ import annotations

from c3ae_utils.losses import (
    EPSILON,
    LOSSES,
    AgeL1Loss,
    BalancedFocalLoss,
    ExpectedAgeMAE,
    TwoPointCrossEntropy,
    TwoPointKLDivergence,
    balanced_bin_weights,
    distribution_loss,
    expected_age_absolute_error,
)
from c3ae_utils.training.callbacks import (
    DIVERGED_MAE,
    MONITOR,
    EpochClock,
    RunRecorder,
    divergence,
    make_callbacks,
)
from c3ae_utils.training.command import build_parser, main
from c3ae_utils.training.compilation import compile_model, learning_rate_schedule
from c3ae_utils.training.config import SCHEDULES, TrainConfig, check_run_name, default_run_name
from c3ae_utils.training.fit import train
from c3ae_utils.training.loso import LosoFold, LosoRun, leave_one_subject_out, subject_folds
from c3ae_utils.training.runs import (
    LOCK_FILE,
    PENDING_MODEL,
    Run,
    RunFailed,
    cache_fingerprint,
    load_run,
    run_dir,
)

__all__ = [
    # losses (their home is c3ae_utils.losses)
    "EPSILON", "LOSSES", "AgeL1Loss", "BalancedFocalLoss", "ExpectedAgeMAE", "TwoPointCrossEntropy",
    "TwoPointKLDivergence", "balanced_bin_weights", "distribution_loss", "expected_age_absolute_error",
    # config and runs
    "TrainConfig", "SCHEDULES", "default_run_name", "check_run_name",
    "Run", "run_dir", "load_run", "PENDING_MODEL", "RunFailed", "LOCK_FILE", "cache_fingerprint",
    # compile and callbacks
    "compile_model", "learning_rate_schedule", "make_callbacks", "EpochClock", "RunRecorder", "MONITOR",
    "divergence", "DIVERGED_MAE",
    # training and FG-NET leave-one-subject-out
    "train", "leave_one_subject_out", "subject_folds", "LosoFold", "LosoRun",
    # command line
    "build_parser", "main",
]
