"""The course on Google Colab: one call keeps the whole course on Google Drive.

Each notebook's setup cell installs the package on Colab (keeping Colab's TensorFlow and
OpenCV) and then calls `colab.setup()`:

    from c3ae_utils import colab
    home = colab.setup()   # Drive mounted (Colab asks you first), the course under MyDrive/c3ae-course

Every badge opens a fresh runtime, whose disk is wiped when it ends. With the course home on
Drive (downloads, raw data, face caches, runs, metrics, figures: `paths.course_home()`), a
notebook opened later finds what the earlier notebooks made. Without Drive (declined, or
`setup(use_drive=False)`) the course lives in /content and is lost with the runtime.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

from c3ae_utils import paths, runtime

DRIVE_MOUNT = Path("/content/drive")  # where Colab mounts Google Drive
HOME_ON_DRIVE = DRIVE_MOUNT / "MyDrive" / "c3ae-course"
HOME_ON_RUNTIME = Path("/content/c3ae-course")  # lost when the runtime ends


def setup(use_drive: bool = True) -> Path:
    """On Colab, put the course home on Drive (or in /content) and return it; elsewhere, return
    `paths.course_home()` unchanged.

    Sets `C3AE_HOME` for this runtime, so every folder of `paths` defaults to a place under it.
    """
    if not runtime.in_colab():
        return paths.course_home()
    home = HOME_ON_DRIVE if use_drive and _mount_drive() else HOME_ON_RUNTIME
    if home == HOME_ON_RUNTIME:
        print(f"The course files go to {home}, which is deleted when this runtime ends: run "
              "colab.setup() and allow Google Drive to keep them between notebooks.")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["C3AE_HOME"] = str(home)
    print(f"Course home: {home}")
    return home


def _mount_drive() -> bool:
    """Mount Google Drive at `DRIVE_MOUNT` (Colab asks the learner first); whether it is there."""
    if (DRIVE_MOUNT / "MyDrive").is_dir():
        return True
    drive = importlib.import_module("google.colab.drive")
    try:
        drive.mount(str(DRIVE_MOUNT))
    except Exception as error:  # declined, timed out or failed: the course still runs, without Drive
        print(f"Google Drive was not mounted ({type(error).__name__}: {error}).", file=sys.stderr)
        return False
    return (DRIVE_MOUNT / "MyDrive").is_dir()
