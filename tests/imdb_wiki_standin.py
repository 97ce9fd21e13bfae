"""IMDB-WIKI stand-ins made of real faces, laid out as the official downloads are.

The official `wiki_crop.tar` (0.8 GB) and `imdb_crop.tar` (7 GB) cannot be reached from the
test machines, and the mirror holds the real `wiki.mat` without its crops. So the end-to-end
tests build stand-ins: real UTKFace photos (the extracted release's files, bytes untouched) named
and stored as the official crops are,

    wiki_crop.tar: wiki_crop/wiki.mat, wiki_crop/NN/<id>_<YYYY-MM-DD>_<year>.jpg
    imdb_crop.tar: imdb_crop/imdb.mat, imdb_crop/NN/nm<celeb>_rm<photo>_<Y-M-D>_<year>.jpg

(NN: the last two digits of the person's id), with a `.mat` in the official struct layout
(`dob` as MATLAB serial day numbers, `photo_taken`, `full_path`, `gender` 1 male / 0 female /
NaN, `name`, `face_location`, `face_score`, `second_face_score`; IMDB adds `celeb_names` and
`celeb_id`) whose dates give each kept photo its true age on 1 July of the year it was taken.
Besides the kept rows, each archive holds `DROPPED[step]` photos planted to fail one step of
the clean-up each, in the order the cleaning counts them. Nothing here imports the package:
ages are computed with `datetime`, independently of `datasets.parsers`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import heapq
import io
import math
import re
import tarfile
from pathlib import Path

import numpy as np
from scipy.io import savemat

_UTKFACE_AGE_GENDER = re.compile(r"^UTKFace/(\d+)_([01])_")  # gender 0 male, 1 female
_MATLAB_DAY_OFFSET = 366  # MATLAB datenum = Python's proleptic ordinal + 366 (datenum 1 = 1 Jan of year 0)
_LAST_YEAR = 2015  # the newest photo_taken of the stand-ins (the official data ends in 2015)

# Planted rows per step of the clean-up, in the order `datasets.CLEANING_STEPS` counts them.
DROPPED = {
    "no face (face_score -inf)": 3,
    "second face": 2,
    "face score below 1": 2,
    "age outside 0-100": 2,
    "unknown gender": 2,
}
PHOTOS_PER_CELEBRITY = 3  # IMDB: photos of one person share a birth date and a celeb_id
# The ages of the stand-ins' photos: 1-19 and 60-79, as many from each decade. Two groups that
# look unlike each other let a few epochs on ~100 faces beat predicting the mean age by a wide
# margin (a sharp check that every label reached its face); with UTKFace's own mix, or
# IMDB-WIKI's (mostly 20-60), such short runs only tie with the mean.
AGE_DECADES = (0, 1, 6, 7)


@dataclasses.dataclass(frozen=True)
class Face:
    """One real UTKFace photo: JPEG bytes (200x200 RGB), true age (years), gender."""

    source: str
    jpeg: bytes
    age: int
    gender: str  # "male" / "female"


@dataclasses.dataclass
class Entry:
    """One row of the `.mat`: where the photo goes and every field the official struct has."""

    face: Face
    prefix: str  # the path before the date: "17/10000217" (WIKI), "37/nm0001037_rm123456789" (IMDB)
    birth: datetime.date
    photo_taken: int
    gender: float  # 1.0 male, 0.0 female, NaN unknown
    face_score: float
    second_face_score: float
    name: str
    celeb_id: int = 0  # IMDB only (1-based index into celeb_names)
    kept: bool = True

    @property
    def full_path(self) -> str:
        """`<prefix>_<birth date>_<photo_taken>.jpg`; IMDB's dates are not zero-padded."""
        birth = self.birth
        date = f"{birth:%Y-%m-%d}" if "_rm" not in self.prefix else f"{birth.year}-{birth.month}-{birth.day}"
        return f"{self.prefix}_{date}_{self.photo_taken}.jpg"


@dataclasses.dataclass(frozen=True)
class Standin:
    """A built stand-in: the archive, and what its `.mat` says the parsers must find.

    `expected` maps each kept row's `full_path` to its (true age, gender); `dropped` is the
    number of planted rows per cleaning step (`DROPPED`); `rows` the `.mat` entries in all.
    """

    name: str
    archive: Path
    expected: dict[str, tuple[int, str]]
    dropped: dict[str, int]
    rows: int


def _selection_key(seed: int, name: str) -> int:
    """A deterministic pseudo-random rank of a member name (smaller: chosen first)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")


def utkface_faces(folder: Path, count: int, seed: int = 0,
                  decades: tuple[int, ...] = AGE_DECADES) -> list[Face]:
    """`count` UTKFace photos of `folder` (the extracted `UTKFace/`), as many from each age
    decade in `decades` (0: ages 1-9, 1: 10-19, ...), drawn at random (fixed by `seed`, ranked by
    name: the same photos from either release where both hold them), in a random order."""
    per_decade = -(-count // len(decades))
    ranked: dict[int, list[tuple[int, str, re.Match]]] = {decade: [] for decade in decades}
    for path in folder.glob("*.jpg"):
        name = f"UTKFace/{path.name}"
        match = _UTKFACE_AGE_GENDER.match(name)
        if match is not None and int(match[1]) // 10 in ranked:
            ranked[int(match[1]) // 10].append((_selection_key(seed, name), name, match))
    chosen = sorted(entry for entries in ranked.values() for entry in heapq.nsmallest(per_decade, entries))
    if len(chosen) < count:
        raise ValueError(f"Only {len(chosen)} UTKFace photos drawn, {count} needed.")
    return [Face(name, (folder / name.split("/", 1)[1]).read_bytes(), int(match[1]),
                 "male" if match[2] == "0" else "female") for _, name, match in chosen[:count]]


def birth_date_for_age(age: int, taken: int, rng: np.random.Generator) -> datetime.date:
    """A random birth date that makes someone `age` completed years old on 1 July of `taken`."""
    day_of_year = int(rng.integers(0, 365))
    month_day = datetime.date(2001, 1, 1) + datetime.timedelta(days=day_of_year)  # 2001: no 29 Feb
    birthday_by_july_first = (month_day.month, month_day.day) <= (7, 1)
    year = taken - age - (0 if birthday_by_july_first else 1)
    return datetime.date(year, month_day.month, month_day.day)


def matlab_datenum(day: datetime.date) -> int:
    """MATLAB's serial day number of `day` (1970-01-01 is 719,529)."""
    return day.toordinal() + _MATLAB_DAY_OFFSET


def _gender_code(gender: str) -> float:
    """IMDB-WIKI's gender field: 1 male, 0 female (the opposite of UTKFace's file names)."""
    return 1.0 if gender == "male" else 0.0


def _kept_scores(rng: np.random.Generator) -> tuple[float, float]:
    """(face_score, second_face_score) of a clean row: one confident face, no second one."""
    return float(rng.uniform(1.5, 6.0)), math.nan


def _plant(entry: Entry, step: str, occurrence: int, rng: np.random.Generator) -> None:
    """Break `entry` so that exactly the cleaning step `step` (a key of `DROPPED`) drops it;
    `occurrence` counts the rows planted for `step` before this one."""
    entry.kept = False
    if step == "no face (face_score -inf)":
        entry.face_score = -math.inf
    elif step == "second face":
        entry.second_face_score = float(rng.uniform(1.0, 3.0))
    elif step == "face score below 1":
        entry.face_score = float(rng.uniform(0.1, 0.9))
    elif step == "age outside 0-100":
        # As in the real metadata: a birth date after the photo, or one far too early.
        wrong = -3 if occurrence % 2 == 0 else 130
        entry.birth = datetime.date(entry.photo_taken - wrong, 3, 1)
    elif step == "unknown gender":
        entry.gender = math.nan
    else:
        raise ValueError(f"Unknown cleaning step {step!r}.")


def _plant_all(entries: list[Entry], rng: np.random.Generator) -> None:
    """Plant `DROPPED` rows at evenly spread positions of `entries` (the others stay kept)."""
    steps = [(step, occurrence) for step, count in DROPPED.items() for occurrence in range(count)]
    positions = np.linspace(0, len(entries) - 1, len(steps)).round().astype(int)
    for position, (step, occurrence) in zip(positions, steps, strict=True):
        _plant(entries[position], step, occurrence, rng)


def wiki_entries(faces: list[Face], seed: int = 0) -> list[Entry]:
    """WIKI rows: one person per photo, `<id>_<YYYY-MM-DD>_<year>.jpg` in folder `id % 100`."""
    rng = np.random.default_rng(seed)
    entries = []
    for index, face in enumerate(faces):
        person = 10_000_000 + 7_919 * index
        taken = int(rng.integers(1990, _LAST_YEAR + 1))
        birth = birth_date_for_age(face.age, taken, rng)
        score, second = _kept_scores(rng)
        entries.append(Entry(face, f"{person % 100:02d}/{person}", birth, taken, _gender_code(face.gender),
                             score, second, name=f"Wiki Person {index}"))
    _plant_all(entries, rng)
    return entries


def imdb_entries(faces: list[Face], seed: int = 0) -> list[Entry]:
    """IMDB rows: `PHOTOS_PER_CELEBRITY` photos per celebrity (one birth date, photos taken in
    the years that give each its true age), `nm<celeb>_rm<photo>_<Y-M-D>_<year>.jpg` (the date
    not zero-padded, as in the official names) in folder `celeb % 100`."""
    rng = np.random.default_rng(seed)
    entries = []
    for first in range(0, len(faces), PHOTOS_PER_CELEBRITY):
        group = faces[first:first + PHOTOS_PER_CELEBRITY]
        celeb_id = first // PHOTOS_PER_CELEBRITY + 1
        nm = 1_000 + 37 * celeb_id
        oldest = max(face.age for face in group)
        birth = birth_date_for_age(oldest, int(rng.integers(1995, _LAST_YEAR + 1)), rng)
        after_july_first = (birth.month, birth.day) > (7, 1)
        for face in group:
            taken = birth.year + face.age + int(after_july_first)
            score, second = _kept_scores(rng)
            prefix = f"{nm % 100:02d}/nm{nm:07d}_rm{int(rng.integers(10**8, 10**9))}"
            entries.append(Entry(face, prefix, birth, taken, _gender_code(face.gender), score, second,
                                 name=f"Celebrity {celeb_id}", celeb_id=celeb_id))
    _plant_all(entries, rng)
    return entries


def _cells(values: list[object]) -> np.ndarray:
    """A MATLAB 1 x n cell array (object array) holding `values`."""
    cells = np.empty((1, len(values)), dtype=object)
    for index, value in enumerate(values):
        cells[0, index] = value
    return cells


def _face_location(rng: np.random.Generator) -> np.ndarray:
    """A 1 x 4 box (x1, y1, x2, y2 in pixels) around the middle of a 200 x 200 photo."""
    x1, y1 = rng.uniform(35, 55, size=2)
    side = rng.uniform(100, 120)
    return np.array([[x1, y1, x1 + side, y1 + side]])


def mat_struct(entries: list[Entry], name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The `.mat` struct of `entries`: the official fields, each 1 x n, in the official order."""
    rng = np.random.default_rng(seed)
    dob = [matlab_datenum(entry.birth) for entry in entries]
    struct = {
        # wiki.mat stores dob as int32; imdb.mat as double.
        "dob": np.array([dob], dtype=np.int32 if name == "wiki" else np.float64),
        "photo_taken": np.array([[entry.photo_taken for entry in entries]], dtype=np.uint16),
        "full_path": _cells([entry.full_path for entry in entries]),
        "gender": np.array([[entry.gender for entry in entries]], dtype=np.float64),
        "name": _cells([entry.name for entry in entries]),
        "face_location": _cells([_face_location(rng) for _ in entries]),
        "face_score": np.array([[entry.face_score for entry in entries]], dtype=np.float64),
        "second_face_score": np.array([[entry.second_face_score for entry in entries]], dtype=np.float64),
    }
    if name == "imdb":
        celebrities = sorted({(entry.celeb_id, entry.name) for entry in entries})
        struct["celeb_names"] = _cells([celebrity for _, celebrity in celebrities])
        struct["celeb_id"] = np.array([[entry.celeb_id for entry in entries]], dtype=np.uint16)
    return struct


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add the file `name` holding `data` to an open tar archive."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_452_960_000  # January 2016, when the official archives were made
    archive.addfile(info, io.BytesIO(data))


def write_archive(entries: list[Entry], name: str, folder: Path, seed: int = 0) -> Path:
    """`folder/<name>_crop.tar` (uncompressed, like the official one): the photos under
    `<name>_crop/NN/...` and `<name>_crop/<name>.mat`."""
    buffer = io.BytesIO()
    savemat(buffer, {name: mat_struct(entries, name, seed)}, format="5", oned_as="row")
    target = folder / f"{name}_crop.tar"
    with tarfile.open(target, "w") as archive:
        _add_member(archive, f"{name}_crop/{name}.mat", buffer.getvalue())
        for entry in entries:
            _add_member(archive, f"{name}_crop/{entry.full_path}", entry.face.jpeg)
    return target


def build_standins(utkface_folder: Path, folder: Path, kept: int, seed: int = 0,
                   decades: tuple[int, ...] = AGE_DECADES) -> dict[str, Standin]:
    """`wiki_crop.tar` and `imdb_crop.tar` in `folder`, each with `kept` clean rows plus the
    planted `DROPPED` rows, from disjoint sets of real UTKFace photos aged as `decades` says."""
    per_dataset = kept + sum(DROPPED.values())
    faces = utkface_faces(utkface_folder, 2 * per_dataset, seed, decades)
    makers = {"wiki": wiki_entries, "imdb": imdb_entries}
    standins = {}
    for offset, (name, make_entries) in enumerate(makers.items()):
        entries = make_entries(faces[offset * per_dataset:(offset + 1) * per_dataset], seed)
        expected = {entry.full_path: (entry.face.age, entry.face.gender) for entry in entries if entry.kept}
        archive = write_archive(entries, name, folder, seed)
        standins[name] = Standin(name, archive, expected, dict(DROPPED), len(entries))
    return standins
