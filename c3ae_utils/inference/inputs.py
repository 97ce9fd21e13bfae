"""Which files `c3ae predict` reads: photos and videos by suffix, folders expanded to the
media files directly inside them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def is_video(path: Path) -> bool:
    """Whether `path` names a video by its suffix (`VIDEO_SUFFIXES`, any case)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """The inputs with each folder replaced by the photos and videos directly inside it
    (`IMAGE_SUFFIXES`, `VIDEO_SUFFIXES`, any case; hidden files skipped; sorted by name). A
    folder without any stays in the list, so it is reported."""
    expanded: list[Path] = []
    for path in inputs:
        found = sorted(_media_files(path)) if path.is_dir() else []
        expanded.extend(found or [path])
    return expanded


def _media_files(folder: Path) -> list[Path]:
    """Photos and videos directly inside `folder` (by suffix)."""
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    return [
        path for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in suffixes
    ]
