"""What the tests know of each UTKFace release they may meet, told apart by image count.

The course mirror (CI's `../shared/data`) holds 22,207 of the aligned & cropped faces (1,501
held back); a user who ran `make run-all` without a mirror has the official release's 23,708
(`datasets.REGISTRY["utkface"]`'s layout accepts both). Facts measured on the mirror (the
decade histogram, the split sizes) are checked exactly there; on the official release, whose
histogram was never measured here, the tests check what holds for any release instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UTKFaceRelease:
    """One release: its images (`UTKFace/*.jpg`), and where measured, its faces per age decade
    (0-9, 10-19, ..., 90+) and its split sizes at seed 0."""

    name: str
    images: int
    decades: tuple[int, ...] | None = None
    splits: dict[str, int] | None = None


RELEASES = {
    release.images: release for release in (
        UTKFaceRelease("the course mirror", 22_207, (2867, 1434, 6879, 4250, 2103, 2154, 1235, 655, 472, 158),
                       {"train": 15_545, "val": 3_331, "test": 3_331}),
        UTKFaceRelease("the official release", 23_708),
    )
}

# Written here, not taken from the package: [age]_[gender]_[race]_[date].jpg.chip.jpg, where
# the official release has a few names without the race.
_LABELLED = re.compile(r"^\d+_[01]_(?:[0-4]_)?\d+\s*\.?jpg\.chip\.jpg$")


def release_of(folder: Path) -> UTKFaceRelease:
    """The release extracted in `folder` (the `UTKFace/` directory); AssertionError if unknown."""
    count = sum(1 for _ in folder.glob("*.jpg"))
    assert count in RELEASES, f"{folder} holds {count:,} images: neither UTKFace release the tests know ({sorted(RELEASES)})"
    return RELEASES[count]


def labelled_images(folder: Path) -> int:
    """Images in `folder` whose names carry an age and a gender (the rows of the metadata table)."""
    return sum(1 for path in folder.glob("*.jpg") if _LABELLED.match(path.name))
