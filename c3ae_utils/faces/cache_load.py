"""Loading a finished face cache: `load_cache` gives a `FaceCache` (crops, table, failures),
`FaceCache.select` one split of it, and `yield_table` how many images survive each step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from c3ae_utils import datasets
from c3ae_utils.faces.cache_files import (
    cache_path,
    concatenate_crops,
    is_finished,
    read_config,
    read_summary,
)
from c3ae_utils.faces.images import REASON_TOO_SMALL_IMAGE, REASON_UNREADABLE
from c3ae_utils.faces.processing import REASON_NO_FACE, REASON_SECOND_FACE, REASON_SMALL_FACE


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
    A `FaceCache` passed in is returned as it is."""
    if isinstance(name_or_path, FaceCache):
        return name_or_path
    folder = cache_path(name_or_path)
    if not is_finished(folder):
        raise FileNotFoundError(
            f"No finished face cache at {folder}. Build it with faces.build_cache (notebook 02) or "
            "`python -m c3ae_utils.faces build-cache --dataset NAME`."
        )
    config = read_config(folder)
    table, failures = read_summary(folder)
    crops = concatenate_crops(folder, config["num_chunks"], len(table), config["settings"]["crop_size"])
    return FaceCache(crops, table, failures, folder)


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
