"""Which files `c3ae predict` reads: photos and videos, found by decoding rather than by name.

A folder stands for every file directly inside it that Pillow or OpenCV can decode as an
image, or OpenCV as a video, whatever its suffix (`.jfif`, `.jpe`, a JPEG named `.heic`);
`scan_inputs` also names every file it leaves out and why. Files named one by one are
classified the same way (`media_kind`), their suffix deciding only when nothing decodes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from PIL import Image, UnidentifiedImageError

# The usual names of videos and photos. Decoding decides what a file is; a file nothing decodes
# goes to the video reader when its suffix is in VIDEO_SUFFIXES, else to the image reader
# (the reader then says why it failed).
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

SKIP_HIDDEN = "hidden file"
SKIP_FOLDER = "a folder (only the files directly inside a folder are read)"
SKIP_SPECIAL = "not a regular file (a broken link, a pipe or a device)"
SKIP_UNDECODABLE = "neither an image nor a video that Pillow or OpenCV can decode"


@dataclass(frozen=True)
class SkippedFile:
    """A file of a folder input that `c3ae predict` leaves out, and why (`reason`)."""

    path: Path
    reason: str


@dataclass
class InputScan:
    """The inputs to read (folders replaced by their media files; other paths kept as given,
    so a missing one is reported) and the files of folders left out."""

    files: list[Path] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)


def is_video(path: Path) -> bool:
    """Whether `path` names a video by its suffix (`VIDEO_SUFFIXES`, any case)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def media_kind(path: Path) -> str | None:
    """"photo" when Pillow or OpenCV recognises the file as an image, "video" when OpenCV
    opens it as a video and reads a frame, None otherwise (or when it cannot be read)."""
    if _is_image(path):
        return "photo"
    return "video" if _is_video_file(path) else None


def _is_image(path: Path) -> bool:
    """Whether the file starts like an image Pillow or OpenCV decodes (headers only)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: read_image decides
            Image.open(path).close()
        return True
    except Image.DecompressionBombError:
        return True  # an image all the same: read_image refuses it, saying why
    except UnidentifiedImageError:
        return bool(cv2.haveImageReader(str(path)))
    except (OSError, ValueError, SyntaxError):
        return False


def _is_video_file(path: Path) -> bool:
    """Whether OpenCV opens the file as a video and reads its first frame."""
    capture = cv2.VideoCapture(str(path))
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()


def scan_inputs(inputs: Sequence[Path]) -> InputScan:
    """Every folder of `inputs` replaced by the photos and videos directly inside it (sorted
    by name; hidden files, sub-folders and files nothing decodes are left out and listed in
    `skipped`). A folder without any stays in `files`, so it is reported."""
    scan = InputScan()
    for path in inputs:
        if not path.is_dir():
            scan.files.append(path)
            continue
        found, skipped = _scan_folder(path)
        scan.files.extend(found or [path])
        scan.skipped.extend(skipped)
    return scan


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """The inputs with each folder replaced by the photos and videos directly inside it
    (`scan_inputs(inputs).files`)."""
    return scan_inputs(inputs).files


def _scan_folder(folder: Path) -> tuple[list[Path], list[SkippedFile]]:
    """The media files directly inside `folder`, and the entries left out with the reason."""
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in sorted(folder.iterdir()):
        reason = _skip_reason(path)
        if reason is None:
            found.append(path)
        else:
            skipped.append(SkippedFile(path, reason))
    return found, skipped


def _skip_reason(path: Path) -> str | None:
    """Why a folder entry is not read (None: it is a photo or a video)."""
    if path.name.startswith("."):
        return SKIP_HIDDEN
    if path.is_dir():
        return SKIP_FOLDER
    if not path.is_file():  # a FIFO would block the first read; a broken link has nothing
        return SKIP_SPECIAL
    try:
        path.open("rb").close()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return None if media_kind(path) else SKIP_UNDECODABLE
