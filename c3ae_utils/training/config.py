"""The settings of one training run (`TrainConfig`, saved as `config.json`) and the names of
run folders: `default_run_name` (derived from the settings) and `check_run_name`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from c3ae_utils import paths
from c3ae_utils.faces import cache as face_cache
from c3ae_utils.losses import LOSSES

SCHEDULES = ("cosine", "plateau", "constant")


@dataclass
class TrainConfig:
    """Every setting of one training run (saved as `config.json`)."""

    dataset: str = "utkface"  # dataset of the face cache
    max_images: int | None = None  # the cache of that many images (faces.cache_name); None: all
    cache_name: str | None = None  # explicit cache name (overrides dataset/max_images)
    run_name: str | None = None  # folder under paths.runs_dir(); default f"{dataset}-{loss}[-{max_images}]"
    loss: str = "focal"  # distribution loss: "focal", "kl" or "ce"
    loss_weight: float = 10.0  # lambda: weight of the distribution loss next to L1(age)
    focal_gamma: float = 2.0
    focal_ce_weight: float = 0.1  # weight of the plain cross-entropy inside the focal loss
    balance_power: float = 0.5  # focal bin weights ~ frequency ** -power (balanced_bin_weights)
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 0.002  # Adam, as in the reference
    schedule: str = "cosine"  # "cosine" (to 1% of lr), "plateau" (x0.5 after patience/2 flat epochs), "constant"
    patience: int = 10  # early stopping on val_age_mae; 0 switches it off
    seed: int = 0  # weights, shuffling and augmentation
    train_on_val: bool = False  # also train on the val split (a final model; needs patience 0, no plateau)
    augment: bool = True
    use_se: bool = True  # squeeze-and-excitation blocks
    white_norm: bool = True  # (x - 127.5) / 128 inside the model
    learn_w2: bool = True  # train the age head W2 (False: fixed to the bin values)
    w2_init: str = "bins"  # "bins" (the bin values) or "random" (the reference)
    mixed_precision: bool | None = None  # None: on when a GPU is present
    jit_compile: bool = False  # XLA (slower on CPU)
    deterministic: bool | None = None  # op determinism; None: on CPU only
    resume: bool = False  # continue an interrupted run of the same name
    overwrite: bool = False  # delete an earlier run of the same name first
    verbose: int | str = "auto"  # Keras fit verbosity; "auto": 1 in a terminal, 2 otherwise

    # Settings that may change between an interrupted run and its resumption.
    RESUMABLE_CHANGES = ("resume", "overwrite", "verbose")

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {self.loss!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}.")
        if self.w2_init not in ("bins", "random"):
            raise ValueError(f"w2_init must be 'bins' or 'random'; got {self.w2_init!r}.")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)!r}.")
        numbers = ("learning_rate", "loss_weight", "focal_gamma", "focal_ce_weight", "balance_power")
        for name in numbers:  # config.json is strict JSON: no NaN or infinity
            if not math.isfinite(float(getattr(self, name))):
                raise ValueError(f"{name} must be a finite number; got {getattr(self, name)!r}.")
        if self.learning_rate <= 0 or self.loss_weight < 0 or self.patience < 0:
            raise ValueError("learning_rate must be > 0, loss_weight and patience >= 0.")
        if self.max_images is not None and int(self.max_images) <= 0:
            raise ValueError(f"max_images must be a positive integer or None; got {self.max_images!r}.")
        if self.verbose not in (0, 1, 2, "auto"):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; got {self.verbose!r}.")
        if self.run_name is not None:
            check_run_name(self.run_name)
        if self.train_on_val and (self.patience or self.schedule == "plateau"):
            raise ValueError(
                "train_on_val needs patience=0 and a schedule other than 'plateau': both watch the "
                "validation MAE, which is no longer held out. Choose the epoch count on a run without it."
            )

    def resolved(self) -> TrainConfig:
        """A copy with `cache_name` and `run_name` filled in."""
        cache_name = self.cache_name
        if cache_name is None:
            cache_name = face_cache.cache_name(self.dataset, self.max_images)
        run_name = self.run_name or default_run_name(self)
        return dataclasses.replace(self, cache_name=cache_name, run_name=run_name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


# Settings that name a run's folder themselves, or do not change what a run computes.
_UNNAMED_SETTINGS = ("dataset", "loss", "max_images", "run_name", *TrainConfig.RESUMABLE_CHANGES)


def default_run_name(config: TrainConfig) -> str:
    """The run folder name of a config without an explicit `run_name`.

    `"<dataset>-<loss>"`, plus `"-<max_images>"` for a limited cache, plus a tag of every other
    setting that differs from `TrainConfig()` (e.g. `utkface-focal-400-3fa9c1`), so that
    runs with different settings never share (or collide in) one folder.
    """
    name = f"{config.dataset}-{config.loss}" + (f"-{config.max_images}" if config.max_images else "")
    tag = paths.settings_tag(config, ignore=_UNNAMED_SETTINGS)
    return f"{name}-{tag}" if tag else name


def check_run_name(name: str) -> str:
    """`name` if it is a plain folder name (no "/", "\\", NUL, not starting with "."); else ValueError."""
    if not name or any(character in name for character in "/\\\0") or name.startswith("."):
        raise ValueError(
            f"run names are plain folder names (no '/' or '\\', not '.', '..' or starting with '.'); "
            f"got {name!r}."
        )
    return name
