"""Compiling C3AE for training: Adam, the cascade loss `L1(age) + lambda * distribution loss`
and its metrics (`compile_model`), and the learning-rate schedule of a run.

Keras only (the losses are `keras.ops`): this also runs on Keras' JAX backend, without
TensorFlow (`bench/bench_train.py` on GPU machines).
"""

from __future__ import annotations

import keras
import numpy as np

from c3ae_utils import age_encoding, shapes
from c3ae_utils.losses import AgeL1Loss, ExpectedAgeMAE, distribution_loss
from c3ae_utils.training.config import TrainConfig


def learning_rate_schedule(
    config: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The Adam learning rate: a cosine decay over all steps to 1% of it, or a constant."""
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.01
        )
    return config.learning_rate  # "constant", and "plateau" (ReduceLROnPlateau changes it)


def compile_model(
    model: keras.Model,
    loss: str = "focal",
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 0.002,
    loss_weight: float = 10.0,
    bin_weights: np.ndarray | None = None,
    focal_gamma: float = 2.0,
    focal_ce_weight: float = 0.1,
    jit_compile: bool = False,
    steps_per_execution: int = 1,
) -> keras.Model:
    """Compile with Adam and the cascade loss `L1(age) + loss_weight * distribution loss`.

    Metrics: `age_mae` (years, age head) and `distribution_expected_mae` (years, the
    expectation of the distribution head over the bin values).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss={
            "age": AgeL1Loss(),
            "distribution": distribution_loss(loss, bin_weights, focal_gamma, focal_ce_weight),
        },
        loss_weights={"age": 1.0, "distribution": float(loss_weight)},
        metrics={"age": [keras.metrics.MeanAbsoluteError(name="mae")], "distribution": [ExpectedAgeMAE()]},
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    _build_training_state(model)
    return model


def _build_training_state(model: keras.Model) -> None:
    """Create the loss trackers', metrics' and optimizer's variables now, from one blank face.

    Without a distribution strategy Keras creates them inside the first traced training step,
    and TensorFlow traces a step that creates variables twice (about 3 s of every run on CPU).
    The updates this makes to the metrics are reset: fit and evaluate start from zero.
    """
    faces = np.zeros((1, *shapes.CROPS_SHAPE), np.float32)
    targets = {"age": np.zeros((1, 1), np.float32),
               "distribution": np.zeros((1, age_encoding.NUM_BINS), np.float32)}
    predictions = model(faces, training=False)
    model.compute_loss(x=faces, y=targets, y_pred=predictions, training=False)
    model.compute_metrics(faces, targets, predictions, sample_weight=None)
    model.reset_metrics()
    model.optimizer.build(model.trainable_variables)
