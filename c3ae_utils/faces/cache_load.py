"""Loading a finished face cache: `load_cache` gives a `FaceCache` (crops, table, failures),
`FaceCache.select` one split of it, and `yield_table` how many images survive each step.
Every file `load_cache` reads is checked against the record its build wrote (`checksums.json`)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from c3ae_utils import datasets
from c3ae_utils.faces.cache_checksums import (
    DIGEST,
    data_problem,
    is_record,
    read_json_object,
    read_or_none,
)
from c3ae_utils.faces.cache_files import (
    CHECKSUMS,
    CHUNKS,
    CONFIG,
    FAILURES,
    MANIFEST,
    SUMMARY_FILES,
    TABLE,
    cache_path,
    chunk_stem,
    damaged_cache,
    is_finished,
)
from c3ae_utils.faces.images import REASON_TOO_SMALL_IMAGE, REASON_UNREADABLE
from c3ae_utils.faces.processing import REASON_NO_FACE, REASON_SECOND_FACE, REASON_SMALL_FACE
from c3ae_utils.shapes import CHANNELS, NUM_SCALES


@dataclass
class FaceCache:
    """A loaded face cache.

    `crops`: uint8 [n, 3, 64, 64, 3] (outer, middle, inner; RGB); `table`: n rows aligned
    with `crops`: the metadata columns (path, age, gender, ..., split) plus yaw, pitch, roll
    (degrees), confidence and the face box (pixels of the original image); `failures`:
    path, reason, detail per image that gave no usable face; `path`: the cache folder.
    """

    crops: np.ndarray
    table: pd.DataFrame
    failures: pd.DataFrame
    path: Path

    def __len__(self) -> int:
        return len(self.table)

    def select(self, split: str) -> FaceCache:
        """The faces of one split ("train", "val", "test", or "all"; `datasets.select_split`):
        a `FaceCache` with those crops and table rows (index reset), failures unchanged."""
        positions = datasets.select_split(self.table, split)
        return FaceCache(self.crops[positions], self.table.iloc[positions].reset_index(drop=True),
                         self.failures, self.path)


def load_cache(name_or_path: str | Path | FaceCache) -> FaceCache:
    """Load a finished cache: crops uint8 [n, 3, 64, 64, 3], table (n rows), failures.
    A `FaceCache` passed in is returned as it is. Each file is checked against its record
    (SHA-256, about 0.5 s more for the full UTKFace cache): `cache_files.DamagedCache`, a
    ValueError naming the file and the command that repairs it, when one does not verify."""
    if isinstance(name_or_path, FaceCache):
        return name_or_path
    folder = cache_path(name_or_path)
    if not is_finished(folder):
        raise FileNotFoundError(
            f"No finished face cache at {folder}. Build it with faces.build_cache (notebook 02) or "
            "`python -m c3ae_utils.faces build-cache --dataset NAME`."
        )
    files = read_checksums(folder)
    config = json.loads(read_verified(folder, CONFIG, files))
    table = read_verified_table(folder, MANIFEST, files)
    failures = read_verified_table(folder, FAILURES, files)
    crops = concatenate_crops(folder, files, config["num_chunks"], len(table), config["settings"]["crop_size"])
    for name in sorted(files):  # the files loading does not use: a rebuild reads them
        if name == TABLE or name.endswith(".parquet") and name.startswith(f"{CHUNKS}/"):
            read_verified(folder, name, files)
    return FaceCache(crops, table, failures, folder)


def read_checksums(folder: Path) -> dict[str, Any]:
    """The records of a finished cache's files (`checksums.json`); DamagedCache when it is
    missing (a cache built before caches recorded checksums) or damaged."""
    checksums = read_json_object(folder / CHECKSUMS)
    files = checksums.get("files") if checksums is not None else None
    if not isinstance(files, dict) or not all(map(is_record, files.values())):
        exists = (folder / CHECKSUMS).exists()
        raise damaged_cache(folder, CHECKSUMS, "is damaged" if exists else
                           "is missing (the cache was built before caches recorded checksums)")
    for name in SUMMARY_FILES:
        if name not in files:
            raise damaged_cache(folder, CHECKSUMS, f"has no record of {name}")
    return files


def read_verified(folder: Path, name: str, files: dict[str, Any]) -> bytes:
    """The bytes of the cache file `name` (relative to `folder`), checked against its record in
    `files` (`read_checksums`); DamagedCache naming the file when they differ."""
    if name not in files:  # a chunk's files
        raise damaged_cache(folder, CHECKSUMS, f"has no record of {name}")
    data = read_or_none(folder / name)
    problem = data_problem(data, files[name])
    if problem is not None:
        raise damaged_cache(folder, name, problem)
    return data


def read_verified_table(folder: Path, name: str, files: dict[str, Any]) -> pd.DataFrame:
    """The cache's parquet or CSV file `name`, checked against its record (`read_verified`)."""
    data = io.BytesIO(read_verified(folder, name, files))
    return pd.read_parquet(data) if name.endswith(".parquet") else pd.read_csv(data, keep_default_na=False)


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_chunk_into(path: Path, record: dict[str, Any], crops: np.ndarray, start: int) -> int | None:
    """Read the `.npy` chunk `path` straight into `crops[start:]`, hashing its bytes on the way
    (one copy, as fast as NumPy's own reader plus SHA-256); the number of faces it holds, or
    None when it does not match `record` or does not fit (missing, damaged, cut short)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            shape, fortran, dtype = _NPY_HEADERS[np.lib.format.read_magic(handle)](handle)
            size = handle.tell()
            handle.seek(0)
            digest.update(handle.read(size))
            if dtype != np.uint8 or fortran or shape[1:] != crops.shape[1:] or start + shape[0] > len(crops):
                return None
            view = memoryview(crops[start : start + shape[0]]).cast("B")
            if handle.readinto(view) != len(view) or handle.read(1):
                return None
            digest.update(view)
    except (OSError, ValueError, KeyError):  # missing; a damaged header
        return None
    matches = size + len(view) == record["bytes"] and digest.hexdigest() == record[DIGEST]
    return shape[0] if matches else None


def concatenate_crops(folder: Path, files: dict[str, Any], num_chunks: int, num_faces: int,
                      crop_size: int) -> np.ndarray:
    """The chunks' crops in order, one uint8 [num_faces, 3, s, s, 3] array in memory, each chunk
    checked against its record in `files`; DamagedCache naming a chunk that does not verify."""
    crops = np.empty((num_faces, NUM_SCALES, crop_size, crop_size, CHANNELS), dtype=np.uint8)
    start = 0
    for index in range(num_chunks):
        name = f"{CHUNKS}/{chunk_stem(index)}.npy"
        if name not in files:
            raise damaged_cache(folder, CHECKSUMS, f"has no record of {name}")
        count = _read_chunk_into(folder / name, files[name], crops, start)
        if count is None:
            problem = data_problem(read_or_none(folder / name), files[name])
            raise damaged_cache(folder, name, problem or f"does not fit the {num_faces} faces of the manifest")
        start += count
    if start != num_faces:
        raise damaged_cache(folder, MANIFEST, f"has {num_faces} faces for {start} crops in the chunks")
    return crops


def yield_table(caches: dict[str, FaceCache]) -> pd.DataFrame:
    """How many images survive each step, one row per cache: counts and the final yield (%)."""
    rows = {}
    for name, cache in caches.items():
        reasons = cache.failures["reason"].value_counts()
        images = int(cache.table["path"].nunique() + len(cache.failures))
        readable = images - int(reasons.get(REASON_UNREADABLE, 0)) - int(reasons.get(REASON_TOO_SMALL_IMAGE, 0))
        found = readable - int(reasons.get(REASON_NO_FACE, 0))
        single = found - int(reasons.get(REASON_SECOND_FACE, 0))
        large = single - int(reasons.get(REASON_SMALL_FACE, 0))
        rows[name] = {
            "images": images,
            "readable": readable,
            "face found": found,
            "no second face": single,
            "face large enough": large,
            "faces cached": len(cache),
            "yield %": round(100.0 * large / images, 2) if images else float("nan"),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
