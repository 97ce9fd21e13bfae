"""Weights: the catalogue of named weights (the shipped model, the reference files), and the
one loader, `load_model`, of everything `resolve_weights` accepts (a name, a run name or
folder, a `.keras` file, a reference `.h5` file); every model it returns is checked, and a
training run recorded as failed (`run_failure`) is refused.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import keras

from c3ae_utils import datasets, paths
from c3ae_utils import losses as _losses  # noqa: F401  (registers the losses and metrics of compiled runs)
from c3ae_utils.network.reference_h5 import load_reference_h5
from c3ae_utils.network.signature import check_signature
from c3ae_utils.network.weight_files import (
    WEIGHT_SUFFIXES,
    WEIGHTS_ADVICE,
    clause,
    file_start,
    newer_keras_message,
    saved_by_keras3,
)

# The reference implementation's published weights (fetched by `datasets.fetch("reference")`).
REFERENCE_WEIGHTS: dict[str, str] = {
    "reference-v89": "c3ae_imdb_v89.h5",  # focal loss + SE
    "reference-v84": "imdb_focal_loss_c3ae_v84.h5",  # focal loss, no SE
}
# The course's own model, shipped in the repository's `models/` (installed as the package
# data `c3ae_utils.models`); `models/README.md` is its model card.
SHIPPED_WEIGHTS: dict[str, str] = {
    "c3ae-utkface": "c3ae_utkface.keras",  # KL + SE, trained on UTKFace's train split
}
DEFAULT_WEIGHTS = "c3ae-utkface"  # the shipped model; "reference-v89" is one flag away
RUN_MODEL_FILES = ("best.keras", "last.keras", "next.keras")  # the models a training run writes


def _reference_sha256(file_name: str) -> str | None:
    """The published SHA-256 of the reference file `file_name` (`datasets.REGISTRY`)."""
    spec = datasets.get_spec("reference")
    digests = [entry.sha256 for entry in (*spec.mirror, *spec.downloads) if entry.target == file_name]
    return next((digest for digest in digests if digest), None)


def _verify_reference(path: Path) -> Path:
    """`path` after checking its SHA-256 against the registry; ValueError naming the file
    when it changed after it was fetched (fetching checks it only once)."""
    try:
        datasets.verify_checksum(path, sha256=_reference_sha256(path.name))
    except ValueError as error:
        raise ValueError(
            f"{path} is not the published reference file: {clause(error)}. It was damaged or "
            f"changed after it was fetched: delete {path.parent} and run "
            "`c3ae data fetch reference` (or datasets.fetch('reference'))."
        ) from error
    return path


def reference_weights_path(name: str = "reference-v89") -> Path:
    """The file of reference weights `name` (a key of `REFERENCE_WEIGHTS` or its file name),
    fetched with `datasets.fetch("reference")` on first use and checked against its
    published SHA-256 on every use (ValueError when it differs)."""
    file_name = REFERENCE_WEIGHTS.get(name, name)
    if file_name not in REFERENCE_WEIGHTS.values():
        raise ValueError(f"Unknown reference weights {name!r}; choose one of {sorted(REFERENCE_WEIGHTS)}.")
    path = datasets.fetch("reference") / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing after datasets.fetch('reference').")
    return _verify_reference(path)


def shipped_models_dir() -> Path:
    """The folder of the shipped models: the checkout's `models/` when running from one, else
    the installed package data `c3ae_utils.models` (the same files, copied by pip)."""
    package = Path(__file__).resolve().parents[1]  # c3ae_utils/, above this subpackage
    checkout = package.parent / "models"
    if (package.parent / "pyproject.toml").is_file() and checkout.is_dir():  # not some site-packages/models
        return checkout
    installed = package / "models"  # where pip puts them (pyproject maps models/ to c3ae_utils.models)
    return installed if installed.is_dir() else checkout  # neither: the error names the checkout's


def shipped_weights_path(name: str = "c3ae-utkface") -> Path:
    """The `.keras` file of a shipped model (a key of `SHIPPED_WEIGHTS`)."""
    if name not in SHIPPED_WEIGHTS:
        raise ValueError(f"Unknown shipped model {name!r}; choose one of {sorted(SHIPPED_WEIGHTS)}.")
    path = shipped_models_dir() / SHIPPED_WEIGHTS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the shipped model comes with the repository (`git checkout -- models/`)."
        )
    return path


def _named_weights(name: str) -> Path | None:
    """The file of a named model ("c3ae-utkface", "reference-v89", ...), or None for other names."""
    if name in SHIPPED_WEIGHTS:
        return shipped_weights_path(name)
    if name in REFERENCE_WEIGHTS:
        return reference_weights_path(name)
    return None


def run_failure(folder: Path) -> str | None:
    """One line saying that the training run in `folder` failed, in which epoch and why (its
    `resume.json` records `"failed": {"epoch": ..., "reason": ...}`: the run diverged), or None
    for a run that did not fail (or whose record cannot be read: the model file is checked)."""
    try:
        failed = paths.read_json(Path(folder) / "resume.json", missing_ok=True).get("failed")
    except ValueError:
        return None
    if not isinstance(failed, dict):
        return None
    name = Path(folder).name
    return (
        f"Run {name} failed in epoch {failed.get('epoch')} ({failed.get('reason')}): it has no usable "
        f"model. Train it again with other settings (a lower --learning-rate), e.g. "
        f"`c3ae train --run-name {name} --overwrite ...`."
    )


def _refuse_failed_run(folder: Path) -> None:
    """ValueError (`run_failure`'s line) when the run in `folder` failed."""
    failure = run_failure(folder)
    if failure is not None:
        raise ValueError(failure)


def _run_model_file(folder: Path) -> Path:
    """A run folder's `best.keras`, else its `last.keras`; ValueError for a failed run."""
    _refuse_failed_run(folder)
    for name in ("best.keras", "last.keras"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"Run folder {folder} has no best.keras or last.keras: train it first.")


def resolve_weights(spec: str | os.PathLike | Any | None = None) -> Path:
    """The weights file that `spec` names.

    `spec` is None (the default weights, `DEFAULT_WEIGHTS`), the name of a shipped model
    (`SHIPPED_WEIGHTS`: "c3ae-utkface") or of reference weights (`REFERENCE_WEIGHTS`:
    "reference-v89", "reference-v84"), a `.keras` or `.h5` file, a run folder or the name of
    a run in `paths.runs_dir()` (its `best.keras`), or a `training.Run` (anything with a
    `path` attribute naming a run folder). A run that failed (diverged: `run_failure`), and
    its model files, are refused with a ValueError saying in which epoch and why.
    """
    if spec is None or str(spec) == "":
        spec = DEFAULT_WEIGHTS
    if hasattr(spec, "path") and not isinstance(spec, str | os.PathLike):
        spec = spec.path
    named = _named_weights(str(spec))
    if named is not None:
        return named
    candidate = Path(spec).expanduser()
    for folder in (candidate, paths.runs_dir() / str(spec)):
        if folder.is_dir():
            return _run_model_file(folder)
    if candidate.is_file():
        if candidate.suffix not in WEIGHT_SUFFIXES:
            raise ValueError(f"Weights must be a .keras or .h5 file, got {candidate}.")
        if candidate.name in RUN_MODEL_FILES:  # a run's own model file: refused when the run failed
            _refuse_failed_run(candidate.parent)
        return candidate
    runs = sorted(p.name for p in paths.runs_dir().glob("*")
                  if (p / "best.keras").is_file() and run_failure(p) is None)
    raise FileNotFoundError(
        f"No weights at {str(spec)!r}: give a .keras file, a reference .h5 file, "
        f"{', '.join(sorted(SHIPPED_WEIGHTS))}, {' or '.join(sorted(REFERENCE_WEIGHTS))}, a run folder, or one of the runs in "
        f"{paths.runs_dir()}: {runs or 'none yet (run notebook 05)'}."
    )


def weights_label(path: Path) -> str:
    """A short name for a weights file: the run name for a run's model, else the file stem."""
    path = Path(path)
    return path.parent.name if path.name in ("best.keras", "last.keras") else path.stem


def model_label(spec: keras.Model | str | os.PathLike | Any | None = None) -> str:
    """A short name for what `load_model(spec)` loads: a model's own name, else `weights_label`
    of the file `resolve_weights` finds."""
    return spec.name if isinstance(spec, keras.Model) else weights_label(resolve_weights(spec))


def _keras_load(path: Path, compile: bool) -> keras.Model:
    """`keras.saving.load_model(path)`; ValueError naming the file when Keras cannot read it,
    and naming both Keras versions when a newer Keras saved it (`newer_keras_message`)."""
    try:
        return keras.saving.load_model(path, compile=compile)
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:  # TypeError: unknown class
        # A newer Keras writes settings an older one does not know (TypeError: unexpected argument).
        newer = newer_keras_message(path, keras.__version__, error) if isinstance(error, TypeError | ValueError) else None
        if newer is not None:
            raise ValueError(newer) from error
        raise ValueError(
            f"{path} cannot be loaded as a Keras model: {' '.join(clause(error).split())}. "
            f"{WEIGHTS_ADVICE}"
        ) from error


def _load_file(path: Path, compile: bool) -> keras.Model:
    """The model in a weights file: `.keras` zip archives and `.h5` files saved by Keras 3
    through Keras, Keras 2 `.h5` files (the reference's) through `load_reference_h5`;
    ValueError naming the file when it is neither (Keras calls a damaged archive "File not
    found")."""
    if path.suffix == ".h5":
        return _keras_load(path, compile) if saved_by_keras3(path) else load_reference_h5(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a Keras model: expected a .keras zip archive, found "
            f"{file_start(path)}. {WEIGHTS_ADVICE}"
        )
    return _keras_load(path, compile)


def load_model(spec: keras.Model | str | os.PathLike | Any | None = None, compile: bool = False) -> keras.Model:
    """A C3AE Keras model (RGB input) from anything `resolve_weights` accepts, or `spec` itself
    when it already is a `keras.Model`. Reference `.h5` files go through `load_reference_h5`;
    `compile=True` restores a run's optimizer and losses (needed only to continue training).

    Every model is checked before it is returned (`check_signature`: one input `crops`
    `[None, 3, 64, 64, 3]`, outputs `age` `[None, 1]` and `distribution` `[None, 12]`), so a
    file that is not a model, or is another model, fails here with a ValueError naming the
    file, not at the first face.
    """
    if isinstance(spec, keras.Model):
        return check_signature(spec, f"model {spec.name!r}")
    path = resolve_weights(spec)
    model = _load_file(path, compile)
    return check_signature(model, path)
