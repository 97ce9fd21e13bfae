"""Parsers that turn each dataset's own label format into a tidy table.

Contract: every parser returns one row per image, RangeIndex, with the common columns first:
path (absolute, `STRING`), age (int64, completed years), gender ("female" / "male" / <NA>),
subject (`STRING`, <NA> where unknown) and dataset, then per-dataset extras. UTKFace and FG-NET
labels come from file names (`parse_utkface`, `parse_fgnet`); IMDB-WIKI labels from its MATLAB
`.mat` (`read_imdb_wiki_mat`, raw and uncleaned), with ages computed by `age_at_mid_year` from
MATLAB day numbers (`datenum_to_date`). A missing folder raises FileNotFoundError; a file that
is not what it should be raises ValueError. Parsers read only; they never fetch.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.io import loadmat

logger = logging.getLogger(__name__)

UTKFACE_RACES = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "others"}
# [age]_[gender]_[race]_[date&time].jpg.chip.jpg; race may be missing, and the release has a
# name with a space before ".jpg" and one without the dot.
_UTKFACE_NAME = re.compile(r"^(?P<age>\d+)_(?P<gender>[01])_(?:(?P<race>[0-4])_)?(?P<date>\d+)\s*\.?jpg\.chip\.jpg$")
_FGNET_NAME = re.compile(r"^(?P<subject>\d{3})A(?P<age>\d{2})(?P<twin>[ab]?)\.jpg$", re.IGNORECASE)
STRING = pd.StringDtype()  # strings with pd.NA for missing values

_MAT_FIELDS = ("dob", "photo_taken", "full_path", "gender", "face_score", "second_face_score")
_DATENUM_UNIX_EPOCH = 719_529  # MATLAB datenum of 1970-01-01 (datenum 1 = 1 January of year 0)


def _tidy(columns: dict[str, object]) -> pd.DataFrame:
    """The common columns with their dtypes (path, age, gender, subject, dataset first)."""
    table = pd.DataFrame(columns)
    for column in ("path", "gender", "subject", "dataset", "race", "name"):
        if column in table:
            table[column] = table[column].astype(STRING)
    table["age"] = table["age"].astype("int64")
    return table


# --------------------------------------------------------------------------------------------
# Labels in file names: UTKFace and FG-NET
# --------------------------------------------------------------------------------------------


def parse_utkface(folder: Path) -> pd.DataFrame:
    """One row per UTKFace image in `folder` (the `UTKFace/` directory), sorted by file name.

    Columns: path, age (years), gender (0 = male, 1 = female in the names), subject (<NA>),
    dataset, race (white, black, asian, indian, others; <NA> when the name lacks it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; run datasets.fetch('utkface').")
    rows, skipped = [], []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        match = _UTKFACE_NAME.match(entry.name)
        if match is None:
            skipped.append(entry.name)
            continue
        race = match["race"]
        rows.append((entry.path, int(match["age"]), "male" if match["gender"] == "0" else "female",
                     UTKFACE_RACES[int(race)] if race is not None else None))
    if skipped:
        logger.warning("Skipped %d UTKFace files with unreadable names, e.g. %s", len(skipped), skipped[:3])
    if not rows:
        raise ValueError(f"No UTKFace images found in {folder}.")
    path, age, gender, race = zip(*rows, strict=True)
    return _tidy({"path": path, "age": age, "gender": gender, "subject": [None] * len(rows),
                  "dataset": "utkface", "race": race})


def parse_fgnet(folder: Path) -> pd.DataFrame:
    """One row per FG-NET photo in `folder` (the `FGNET/` directory), sorted by file name.

    Columns: path, age (years), gender (<NA>: not in the names), subject ("001".."082"),
    dataset, points_path (the 68-point landmark file, <NA> if absent).
    """
    folder = Path(folder)
    images = folder / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{images} does not exist; run datasets.fetch('fgnet').")
    rows = []
    for entry in sorted(os.scandir(images), key=lambda entry: entry.name):
        match = _FGNET_NAME.match(entry.name)
        if match is None:
            logger.warning("Skipping FG-NET file with an unexpected name: %s", entry.name)
            continue
        points = folder / "points" / (Path(entry.name).stem.lower() + ".pts")
        rows.append((entry.path, int(match["age"]), match["subject"],
                     str(points) if points.exists() else None))
    if not rows:
        raise ValueError(f"No FG-NET images found in {images}.")
    path, age, subject, points_path = zip(*rows, strict=True)
    table = _tidy({"path": path, "age": age, "gender": [None] * len(rows), "subject": subject,
                   "dataset": "fgnet"})
    table["points_path"] = pd.array(points_path, dtype=STRING)
    return table


# --------------------------------------------------------------------------------------------
# IMDB-WIKI: dates, ages and the .mat files
# --------------------------------------------------------------------------------------------


def datenum_to_date(datenum: np.ndarray) -> np.ndarray:
    """MATLAB serial day numbers (int) -> `datetime64[D]` (proleptic Gregorian calendar)."""
    return np.datetime64("1970-01-01", "D") + (np.asarray(datenum, dtype=np.int64) - _DATENUM_UNIX_EPOCH)


def age_at_mid_year(birth: np.ndarray, year_taken: np.ndarray) -> np.ndarray:
    """Completed years on 1 July of `year_taken` for `datetime64[D]` birth dates (int64).

    IMDB-WIKI only knows the year a photo was taken; the usual convention assumes the middle
    of the year. Someone born on 1 July has their birthday that day; born 2 July or later,
    they are one year younger than `year_taken - birth year`.
    """
    birth = np.asarray(birth, dtype="datetime64[D]")
    birth_year = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    month = (birth.astype("datetime64[M]") - birth.astype("datetime64[Y]")).astype(np.int64) + 1
    day = (birth - birth.astype("datetime64[M]")).astype(np.int64) + 1
    after_july_first = (month > 7) | ((month == 7) & (day > 1))
    return np.asarray(year_taken, dtype=np.int64) - birth_year - after_july_first.astype(np.int64)


def _mat_strings(field: np.ndarray) -> list[str | None]:
    """A MATLAB cell array of strings (object array of 1-element arrays) -> list of str."""
    values = []
    for cell in field.ravel():
        flat = np.asarray(cell).ravel()
        values.append(str(flat[0]) if flat.size else None)
    return values


def _face_boxes(field: np.ndarray, count: int) -> np.ndarray:
    """MATLAB cells of [x1 y1 x2 y2] -> float64 [count, 4] (NaN where a cell is malformed)."""
    boxes = np.full((count, 4), np.nan)
    for row, cell in enumerate(field.ravel()):
        values = np.asarray(cell, dtype=np.float64).ravel()
        if values.size == 4:
            boxes[row] = values
    return boxes


def _images_exist(root: Path, image_paths: list[str]) -> np.ndarray:
    """bool [n]: whether each image file exists (all False at once when `root` is missing)."""
    if not root.is_dir():  # metadata without the pictures (as in the mirror): skip 62k stat calls
        return np.zeros(len(image_paths), dtype=bool)
    return np.fromiter((os.path.exists(path) for path in image_paths), dtype=bool, count=len(image_paths))


def _load_mat_record(path: Path, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """The `name` struct of an IMDB-WIKI `.mat` and its field names; ValueError otherwise."""
    try:
        contents = loadmat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; run datasets.fetch({name!r}).") from None
    except Exception as error:  # scipy raises several types for files that are not .mat
        raise ValueError(f"{path} is not a readable MATLAB .mat file ({error}).") from error
    variables = sorted(key for key in contents if not key.startswith("__"))
    if name not in contents:
        other = [key for key in variables if key in {"wiki", "imdb"}]
        what = f"the {other[0]!r} metadata" if other else f"the variables {variables}"
        raise ValueError(f"{path} holds {what}, not {name!r}: pass the {name}.mat of IMDB-WIKI.")
    record = contents[name]
    fields = record.dtype.names or ()
    missing = [field for field in _MAT_FIELDS if field not in fields]
    if missing:
        raise ValueError(f"{path}: struct {name!r} lacks the IMDB-WIKI fields {missing}.")
    return record[0, 0], fields


def _imdb_wiki_common(record: np.ndarray, fields: tuple[str, ...], name: str,
                      image_paths: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The common columns of an IMDB-WIKI record, with the birth dates and photo years."""
    dob = np.asarray(record["dob"], dtype=np.float64).ravel()
    taken = np.asarray(record["photo_taken"], dtype=np.int64).ravel()
    birth = datenum_to_date(np.floor(dob).astype(np.int64))
    gender_code = np.asarray(record["gender"], dtype=np.float64).ravel()
    gender = np.where(gender_code == 1, "male", np.where(gender_code == 0, "female", None))
    if name == "imdb" and "celeb_id" in fields:
        subject = [str(int(value)) for value in np.asarray(record["celeb_id"]).ravel()]
    else:
        subject = [None] * len(image_paths)
    table = _tidy({"path": image_paths, "age": age_at_mid_year(birth, taken), "gender": gender,
                   "subject": subject, "dataset": name})
    return table, birth, taken


def _add_imdb_wiki_extras(table: pd.DataFrame, record: np.ndarray, fields: tuple[str, ...],
                          birth: np.ndarray, taken: np.ndarray) -> None:
    """Add entry, name, photo_taken, dob, the face scores and the face box to `table`."""
    table["entry"] = np.arange(len(table))
    table["name"] = pd.array(_mat_strings(record["name"]) if "name" in fields else [None] * len(table),
                             dtype=STRING)
    table["photo_taken"] = taken
    table["dob"] = birth.astype("datetime64[s]")
    table["face_score"] = np.asarray(record["face_score"], dtype=np.float64).ravel()
    table["second_face_score"] = np.asarray(record["second_face_score"], dtype=np.float64).ravel()
    boxes = _face_boxes(record["face_location"], len(table)) if "face_location" in fields else None
    for axis, column in enumerate(("face_x1", "face_y1", "face_x2", "face_y2")):
        table[column] = boxes[:, axis] if boxes is not None else np.nan


def read_imdb_wiki_mat(path: Path, name: str, image_root: Path | None = None) -> pd.DataFrame:
    """Every entry of an IMDB-WIKI `.mat` (`name` = "wiki" or "imdb") as a raw table.

    Columns: path (`image_root / full_path`), age (completed years on 1 July of photo_taken,
    see `age_at_mid_year`; raw, so noisy), gender ("male" for 1, "female" for 0, <NA> for
    NaN), subject (IMDB `celeb_id`; <NA> for WIKI), dataset, entry (position in the .mat),
    name, photo_taken (year), dob (birth date), face_score (-inf: no face found),
    second_face_score (NaN: no second face), face_x1, face_y1, face_x2, face_y2 (pixels),
    image_available (the JPEG exists on disk). A `.mat` of another dataset or of something
    else raises ValueError.
    """
    path = Path(path)
    if name not in {"wiki", "imdb"}:
        raise ValueError(f"IMDB-WIKI metadata is 'wiki' or 'imdb', got {name!r}.")
    record, fields = _load_mat_record(path, name)
    root = Path(image_root) if image_root is not None else path.parent / f"{name}_crop"
    image_paths = [str(root / relative) for relative in _mat_strings(record["full_path"])]
    table, birth, taken = _imdb_wiki_common(record, fields, name, image_paths)
    _add_imdb_wiki_extras(table, record, fields, birth, taken)
    table["image_available"] = _images_exist(root, image_paths)
    return table
