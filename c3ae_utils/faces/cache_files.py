"""The files of a face cache: its name and folder, `config.json`, the chunk files, the manifest.

Every read and write of a cache folder goes through this module (layout in `faces.cache`):
the builder writes chunks and the manifest with these functions, the loader reads them back
with these functions, so a check of the files (e.g. checksums) has one place to live.
Every file is written atomically (`paths.atomic_write`): a file that exists is whole.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from c3ae_utils import paths
from c3ae_utils.faces.detection import Detector
from c3ae_utils.faces.processing import Settings
from c3ae_utils.shapes import CHANNELS, NUM_SCALES

CACHE_FORMAT = 1
MANIFEST = "manifest.parquet"  # written last by `finalize`: a cache with it is finished
CONFIG = "config.json"
TABLE = "table.parquet"
FAILURES = "failures.csv"
CHUNKS = "chunks"  # the folder of the chunk files inside a cache folder
CHUNK_SIZE = 64  # images per chunk file


def cache_name(dataset: str, max_images: int | None = None, settings: Settings | None = None) -> str:
    """The cache folder name of a dataset: "utkface" for all images, "utkface-n400" for 400.

    Preprocessing `settings` other than the defaults add a tag of the changed values
    ("utkface-n400-s1a2b3c"), so a cache built with other settings never collides with these.
    """
    if not dataset or "/" in dataset:
        raise ValueError(f"Invalid dataset name {dataset!r}.")
    name = dataset if max_images is None else f"{dataset}-n{int(max_images)}"
    tag = paths.settings_tag(settings) if settings is not None else ""
    return f"{name}-s{tag}" if tag else name


def cache_path(name_or_path: str | Path) -> Path:
    """The folder of a cache given its name (under `paths.cache_dir()`) or its path."""
    candidate = Path(name_or_path)
    if candidate.is_absolute() or len(candidate.parts) > 1:
        return candidate
    return paths.cache_dir() / str(name_or_path)


def is_finished(name_or_path: str | Path) -> bool:
    """Whether the cache is finished: the build writes its manifest last."""
    return (cache_path(name_or_path) / MANIFEST).exists()


def finished_caches() -> list[str]:
    """Names of the finished caches in `paths.cache_dir()`, sorted."""
    return sorted(manifest.parent.name for manifest in paths.cache_dir().glob(f"*/{MANIFEST}"))


def chunk_stem(index: int) -> str:
    """The file name of chunk `index` without its suffix: "chunk-00007"."""
    return f"chunk-{index:05d}"


def write_parquet(table: pd.DataFrame, target: Path) -> None:
    """Write `table` (without its index) to `target`, atomically."""
    paths.atomic_write(target, lambda temporary: table.to_parquet(temporary, index=False))


def write_npy(array: np.ndarray, target: Path) -> None:
    """Write `array` as a `.npy` file (no pickles) to `target`, atomically."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    paths.atomic_write(target, write)


def write_chunk(chunks_dir: Path, index: int, crops: np.ndarray, rows: pd.DataFrame) -> None:
    """Write chunk `index`: its crops uint8 [k, 3, s, s, 3] (`.npy`), then its rows (`.parquet`),
    the parquet last because its presence marks the chunk complete."""
    stem = chunk_stem(index)
    write_npy(crops, chunks_dir / f"{stem}.npy")
    write_parquet(rows, chunks_dir / f"{stem}.parquet")


def chunk_complete(chunks_dir: Path, index: int) -> bool:
    """True when both files of chunk `index` exist in `chunks_dir` (the parquet is written last)."""
    stem = chunk_stem(index)
    return (chunks_dir / f"{stem}.parquet").exists() and (chunks_dir / f"{stem}.npy").exists()


def remove_stale_temporaries(chunks_dir: Path, chunks: Iterable[int]) -> None:
    """Delete the temporary files an interrupted run left for these chunks.

    `paths.atomic_write` names them `chunk-NNNNN.tmp-PID.npy`; caches started before it
    was used have `chunk-NNNNN.npy.tmp-PID`.
    """
    for index in chunks:
        stem = chunk_stem(index)
        for pattern in (f"{stem}.tmp-*", f"{stem}.*.tmp-*"):
            for stale in chunks_dir.glob(pattern):
                stale.unlink(missing_ok=True)


def read_chunk_tables(chunks_dir: Path, indices: Iterable[int]) -> pd.DataFrame:
    """The rows of these chunks' `.parquet` files, concatenated in order (index reset)."""
    frames = [pd.read_parquet(chunks_dir / f"{chunk_stem(index)}.parquet") for index in indices]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def count_crops(chunks_dir: Path, num_chunks: int) -> int:
    """Faces stored in the chunks' `.npy` files (read from their headers)."""
    return sum(
        np.load(chunks_dir / f"{chunk_stem(index)}.npy", mmap_mode="r").shape[0]
        for index in range(num_chunks)
    )


def concatenate_crops(folder: Path, num_chunks: int, num_faces: int, crop_size: int) -> np.ndarray:
    """The chunks' crops in order, one uint8 [num_faces, 3, s, s, 3] array in memory."""
    crops = np.empty((num_faces, NUM_SCALES, crop_size, crop_size, CHANNELS), dtype=np.uint8)
    start = 0
    for index in range(num_chunks):
        part = np.load(folder / CHUNKS / f"{chunk_stem(index)}.npy", mmap_mode="r")
        crops[start : start + len(part)] = part
        start += len(part)
    if start != num_faces:
        raise ValueError(f"{folder}: {start} crops for {num_faces} table rows; rebuild the cache.")
    return crops


def table_fingerprint(table: pd.DataFrame) -> str:
    """SHA-256 of the table's columns and values in order: identifies the input of a cache
    (a changed split or label makes a different cache, never a silently stale one)."""
    digest = hashlib.sha256(json.dumps([str(c) for c in table.columns]).encode())
    digest.update(pd.util.hash_pandas_object(table.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def cache_config(table: pd.DataFrame, chunk_size: int, settings: Settings, detector: Detector) -> dict:
    """The content of `config.json`: input fingerprint, chunking, settings, detector options."""
    return {
        "format": CACHE_FORMAT,
        "num_images": int(len(table)),
        "chunk_size": int(chunk_size),
        "num_chunks": int(math.ceil(len(table) / chunk_size)),
        "table_sha256": table_fingerprint(table),
        "settings": {key: getattr(settings, key) for key in Settings.__dataclass_fields__},
        "detector": {
            "max_side": detector.max_side,
            "min_side": detector.min_side,
            "thresholds": list(detector.thresholds),
            "retry_thresholds": list(detector.retry_thresholds),
            "retry_padding": detector.retry_padding,
            "batch_size": detector.batch_size,
        },
    }


def config_differences(old: dict, new: dict) -> list[str]:
    """The entries (dotted keys; "the table" for the input fingerprint) where two configs differ."""
    found = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if isinstance(before, dict) and isinstance(after, dict):
            found += [f"{key}.{inner}" for inner in sorted(set(before) | set(after))
                      if before.get(inner) != after.get(inner)]
        elif before != after:
            found.append("the table" if key == "table_sha256" else key)
    return found


def read_config(folder: Path) -> dict:
    """The `config.json` of an existing cache folder; ValueError naming it when it is damaged."""
    config_file = folder / CONFIG
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{config_file} is damaged ({error}); delete the folder {folder} and build "
            "the cache again."
        ) from None


def prepare_cache_folder(folder: Path, table: pd.DataFrame, config: dict) -> None:
    """Create the folder, or check that an existing one was started with the same input."""
    paths.ensure_dir(folder / CHUNKS)
    config_file = folder / CONFIG
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    if config_file.exists():
        differences = config_differences(read_config(folder), json.loads(text))
        if differences:
            raise ValueError(
                f"Cache {folder.name!r} in {folder} holds a cache built from a different table or "
                f"with other settings (differs: {', '.join(differences)}). Choose another cache "
                f"name (`--name` of `c3ae cache build-cache`), or delete {folder} to rebuild it."
            )
    else:
        paths.write_text_atomic(config_file, text)
    if not (folder / TABLE).exists():
        write_parquet(table, folder / TABLE)


def write_summary(folder: Path, manifest: pd.DataFrame, failures: pd.DataFrame) -> None:
    """Write `failures.csv`, then `manifest.parquet`: last, its presence marks the cache finished."""
    paths.write_text_atomic(folder / FAILURES, failures.to_csv(index=False))
    write_parquet(manifest, folder / MANIFEST)


def read_summary(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The manifest (one row per cached face) and the failures of a finished cache."""
    manifest = pd.read_parquet(folder / MANIFEST)
    failures = pd.read_csv(folder / FAILURES, keep_default_na=False)
    return manifest, failures
