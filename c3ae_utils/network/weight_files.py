"""What a weights file is, for the two loaders (`weights`, `reference_h5`): the accepted
suffixes, telling a Keras 3 `.h5` from the reference's Keras 2 one, which Keras saved a file,
and the wording of the errors about a file that is not usable weights."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import h5py

WEIGHT_SUFFIXES = (".keras", ".h5")
# The end of every message about weights that cannot be used.
WEIGHTS_ADVICE = (
    "Give C3AE weights: a run name or folder, a .keras file of a model built with "
    "network.build_c3ae, a reference .h5 file, or reference-v89 / reference-v84."
)


def file_start(path: Path) -> str:
    """What a file looks like, for messages: its size and first bytes."""
    with open(path, "rb") as stream:
        head = stream.read(16)
    return f"a file of {path.stat().st_size} bytes starting {head!r}" if head else "an empty file"


def clause(error: BaseException) -> str:
    """An error's message without its final full stop, to continue a sentence."""
    return str(error).rstrip(". ")


def saved_by_keras3(path: Path) -> bool:
    """True for an HDF5 file written by Keras 3's `model.save("....h5")` (not the reference's
    Keras 2 layout, which `load_reference_h5` maps; read as one, its ages would be wrong)."""
    try:
        with h5py.File(path, "r") as file:
            version = file.attrs.get("keras_version", b"")
    except OSError:  # not HDF5, or damaged: `load_reference_h5` says which
        return False
    major = (version.decode() if isinstance(version, bytes) else str(version)).split(".")[0]
    return major.isdigit() and int(major) >= 3


def version_numbers(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version string: (3, 15, 1) for "3.15.1", (3, 16, 0) for
    "3.16.0.dev2026"; () when it starts with none."""
    match = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def saved_keras_version(path: Path) -> str | None:
    """The Keras version that wrote `path`: `keras_version` of a `.keras` archive's
    `metadata.json` or of a Keras 3 `.h5` file's attributes; None when the file does not say
    (or cannot be read: the loader names that error)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                version = json.loads(archive.read("metadata.json")).get("keras_version")
        else:
            with h5py.File(path, "r") as file:
                version = file.attrs.get("keras_version")
    except (OSError, KeyError, ValueError, AttributeError, zipfile.BadZipFile):  # ValueError: bad JSON
        return None
    version = version.decode() if isinstance(version, bytes) else version
    return version if isinstance(version, str) and version_numbers(version) else None


def newer_keras_message(path: Path, installed: str, error: BaseException) -> str | None:
    """The error for a file that Keras `installed` failed to read (with `error`) because a newer
    Keras saved it: "PATH was saved by Keras X, this is Keras Y, which cannot read it (CAUSE):
    upgrade Keras (pip install -U keras)."; None when the file's Keras is not newer."""
    saved = saved_keras_version(path)
    if saved is None or version_numbers(saved) <= version_numbers(installed):
        return None
    return (f"{path} was saved by Keras {saved}, this is Keras {installed}, which cannot read it "
            f"({innermost_cause(error)}): upgrade Keras (pip install -U keras).")


def innermost_cause(error: BaseException) -> str:
    """The last of the causes that Keras chains into one message ("... Exception encountered:
    CAUSE"), on one line and without its final full stop."""
    return " ".join(clause(error).rsplit("Exception encountered:", 1)[-1].split())
