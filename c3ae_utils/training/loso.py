"""FG-NET's leave-one-subject-out protocol, the training half (the paper's protocol):
`leave_one_subject_out` fine-tunes a copy of a trained model once per held-out subject and
keeps its predictions (`LosoRun`); `evaluation.loso_result` measures them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from c3ae_utils import datasets, network
from c3ae_utils.faces import cache as face_cache
from c3ae_utils.training.compilation import compile_model


@dataclass
class LosoFold:
    """One held-out subject: `test` int64 `[k]` (rows of the cache), the training rows' count,
    and the predicted ages (years, `[k]`) before and after fine-tuning with the
    distributions after it (float32 `[k, num_bins]`)."""

    subject: str
    test: np.ndarray
    n_train: int
    ages_before: np.ndarray
    ages: np.ndarray
    distributions: np.ndarray


@dataclass
class LosoRun:
    """Every fold of `leave_one_subject_out` and the settings it ran with."""

    folds: list[LosoFold]
    settings: dict[str, Any]


def subject_folds(table: pd.DataFrame, num_folds: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Test positions of leave-one-subject-out folds: one int64 array per held-out subject.

    The folds come from `datasets.loso_folds` (one per subject, sorted). With `num_folds`,
    a seeded random choice of that many of them (all when None or not fewer than the subjects).
    """
    if num_folds is not None and num_folds < 1:
        raise ValueError(f"num_folds must be >= 1 or None for all subjects (got {num_folds}).")
    folds = [table.index.get_indexer(test) for _, _, test in datasets.loso_folds(table)]
    if num_folds is not None and num_folds < len(folds):
        chosen = np.sort(np.random.default_rng(seed).choice(len(folds), size=num_folds, replace=False))
        folds = [folds[i] for i in chosen]
    return [fold.astype(np.int64) for fold in folds]


def _reset_optimizer(model: keras.Model) -> None:
    """Zero the optimizer's state (moments, step count) so each fold starts fresh."""
    for variable in model.optimizer.variables:
        if variable.name != "learning_rate":  # Keras 3 keeps the learning rate among them
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))


def leave_one_subject_out(
    weights: Any,
    cache: face_cache.FaceCache | str | Path,
    num_folds: int | None = None,
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 2e-4,
    loss: str = "kl",
    seed: int = 0,
    augment: bool = True,
) -> LosoRun:
    """For each held-out subject of `cache` (FG-NET), fine-tune a copy of the model on every
    other subject for `epochs` epochs (Adam at `learning_rate`, the cascade loss with `loss`,
    the course's augmented tf.data pipeline) and predict the held-out faces.

    `weights` is anything `network.load_model` accepts (a model, run, run name or file).
    `num_folds` limits the folds to a seeded random subset of subjects; None runs all of
    them (82 on FG-NET). Every fold starts from the same weights and a fresh optimizer
    state; the model is compiled once, so its train step is traced once. The focal loss is
    used with uniform bin weights here (FG-NET's own ages are few).
    """
    # tf.data needs TensorFlow; imported here so that `training` imports without it.
    from c3ae_utils import pipeline

    faces_cache = face_cache.load_cache(cache)
    base = network.load_model(weights)
    model = keras.models.clone_model(base)
    initial = base.get_weights()
    model.set_weights(initial)
    compile_model(model, loss=loss, learning_rate=learning_rate)
    ages = faces_cache.table["age"].to_numpy(dtype=np.float32)
    folds = []
    for number, test in enumerate(tqdm(subject_folds(faces_cache.table, num_folds, seed), desc="LOSO folds", unit="fold")):
        train_rows = np.setdiff1d(np.arange(len(ages)), test)
        model.set_weights(initial)
        before = network.predict_ages(model, faces_cache.crops[test])["age"]
        if number > 0:
            _reset_optimizer(model)
        keras.utils.set_random_seed(seed + number)
        data = pipeline.make_dataset(
            faces_cache.crops[train_rows], ages[train_rows], training=True, batch_size=batch_size,
            seed=seed + number, augment=augment, repeat=True,
        )
        steps = pipeline.steps_per_epoch(train_rows.size, batch_size)
        # The dataset shuffles itself; shuffle=False only silences Keras' warning about it.
        model.fit(data, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)
        after = network.predict_ages(model, faces_cache.crops[test])
        subject = str(faces_cache.table["subject"].iloc[test[0]])
        folds.append(LosoFold(subject, test, int(train_rows.size), before, after["age"], after["distribution"]))
    settings = {"model": network.model_label(weights), "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "loss": loss, "seed": seed, "augment": augment}
    return LosoRun(folds, settings)
