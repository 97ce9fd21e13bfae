"""What a weights file is, for the two loaders (`weights`, `reference_h5`): the accepted
suffixes, telling a Keras 3 `.h5` from the reference's Keras 2 one, and the wording of the
errors about a file that is not usable weights."""

from __future__ import annotations

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
