"""The files of a face cache: its name and folder, `config.json`, the chunk files, the manifest.

Every write of a cache folder goes through this module (layout in `faces.cache`): the builder
writes chunks, their records (`cache_checksums`) and the manifest with these functions, and
checks with them which chunks are done (those whose files match their record); the loader
(`cache_load`) checks every file it reads against `checksums.json` and raises `DamagedCache`,
whose one line names the file and the command that repairs it (`repair_command`). Every file
is written atomically (`paths.atomic_write`): a file that exists is whole; a full disk is an
OSError saying "no space left on device" and which file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import math
import re
import shlex
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from c3ae_utils import datasets, paths
from c3ae_utils.faces.cache_checksums import (
    DIGEST,
    file_record,
    file_verifies,
    is_record,
    json_bytes,
    read_json_object,
    read_or_none,
)
from c3ae_utils.faces.detection import Detector
from c3ae_utils.faces.processing import Settings

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
MANIFEST = "manifest.parquet"  # written last by `write_summary`: a cache with it is finished
CONFIG = "config.json"
TABLE = "table.parquet"
FAILURES = "failures.csv"
CHECKSUMS = "checksums.json"  # the record of every file of a finished cache (`cache_checksums`)
SUMMARY_FILES = (CONFIG, TABLE, FAILURES, MANIFEST)  # the files besides the chunks that it records
CHUNKS = "chunks"  # the folder of the chunk files inside a cache folder
CHUNK_SIZE = 64  # images per chunk file
_DEFAULT_NAME = re.compile(r"(?P<dataset>[a-z0-9]+)(?:-n(?P<images>\d+))?")  # `cache_name` without settings


def check_cache_name(name: str) -> str:
    """`name` if it is a plain folder name (no "/", "\\", NUL, not "." or ".." or starting with
    "."); else ValueError. A cache name never points outside `paths.cache_dir()`."""
    if not name or any(character in name for character in "/\\\0") or name.startswith("."):
        raise ValueError(
            f"cache names are plain folder names (no '/' or '\\', not '.', '..' or starting with '.'); "
            f"got {name!r}."
        )
    return name


def cache_name(dataset: str, max_images: int | None = None, settings: Settings | None = None) -> str:
    """The cache folder name of a dataset: "utkface" for all images, "utkface-n400" for 400.

    Preprocessing `settings` other than the defaults add a tag of the changed values
    ("utkface-n400-s1a2b3c"), so a cache built with other settings never collides with these.
    """
    if not dataset or "/" in dataset:
        raise ValueError(f"Invalid dataset name {dataset!r}.")
    name = dataset if max_images is None else f"{dataset}-n{int(max_images)}"
    tag = paths.settings_tag(settings) if settings is not None else ""
    return check_cache_name(f"{name}-s{tag}" if tag else name)


def cache_path(name_or_path: str | Path) -> Path:
    """The folder of a cache given its name (under `paths.cache_dir()`; ValueError unless it is
    a plain name, `check_cache_name`) or its path (absolute, or with a folder in it)."""
    candidate = Path(name_or_path)
    if candidate.is_absolute() or len(candidate.parts) > 1:
        return candidate
    return paths.cache_dir() / check_cache_name(str(name_or_path))


def is_finished(name_or_path: str | Path) -> bool:
    """Whether the cache is finished: the build writes its manifest last."""
    return (cache_path(name_or_path) / MANIFEST).exists()


def finished_caches() -> list[str]:
    """Names of the finished caches in `paths.cache_dir()`, sorted."""
    return sorted(manifest.parent.name for manifest in paths.cache_dir().glob(f"*/{MANIFEST}"))


def repair_command(folder: Path) -> str:
    """How to rebuild the cache in `folder`: the `c3ae cache` command for a cache of the
    default name in `paths.cache_dir()`, else `faces.build_cache` with its table and settings."""
    match = _DEFAULT_NAME.fullmatch(folder.name)
    if folder.parent != paths.cache_dir() or not match or match["dataset"] not in datasets.LABELLED:
        return f"faces.build_cache(table, {str(folder)!r}) with the table and settings it was built from"
    words = ["c3ae", "cache", "build-cache", "--dataset", match["dataset"]]
    words += ["--max-images", match["images"]] if match["images"] else []
    # config.json may be the damaged file: checksums.json keeps the chunk size too
    recorded = read_json_object(folder / CONFIG) or read_json_object(folder / CHECKSUMS) or {}
    chunk_size = recorded.get("chunk_size", CHUNK_SIZE)
    words += ["--chunk-size", str(chunk_size)] if chunk_size != CHUNK_SIZE else []
    return f"`{shlex.join(words)}` (and the --seed it was built with, if not 0)"


class DamagedCache(ValueError):
    """A file of a face cache does not hold what its build wrote (`damaged_cache`)."""


def damaged_cache(folder: Path, name: str, problem: str) -> DamagedCache:
    """The error for the file `name` of the cache in `folder`: one line naming the file, its
    `problem` and the command that rebuilds what does not verify (the chunks that do are kept)."""
    return DamagedCache(
        f"The face cache {folder} is damaged: {folder / name} {problem}. Rebuild it with "
        f"{repair_command(folder)}: the build redoes only what does not verify."
    )


def chunk_stem(index: int) -> str:
    """The file name of chunk `index` without its suffix: "chunk-00007"."""
    return f"chunk-{index:05d}"


def parquet_bytes(table: pd.DataFrame) -> bytes:
    """`table` (without its index) as the bytes of a parquet file."""
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    """`array` as the bytes of a `.npy` file (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_bytes(target: Path, data: bytes) -> dict[str, Any]:
    """Write `data` to `target` atomically and return its record (`file_record`). A full disk
    is an OSError (errno ENOSPC) saying "no space left on device", the file and what is free."""
    try:
        paths.atomic_write(target, lambda temporary: temporary.write_bytes(data))
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        free = shutil.disk_usage(target.parent).free
        raise OSError(
            errno.ENOSPC,
            f"no space left on device writing {target} ({len(data):,} bytes; {free:,} bytes free on "
            "that disk): free some space (a cache takes about 37 KB per face) and run the same "
            "command again; the finished chunks are kept",
        ) from None
    return file_record(data)


def write_chunk(chunks_dir: Path, index: int, crops: np.ndarray, rows: pd.DataFrame, config_sha256: str) -> None:
    """Write chunk `index`: its crops uint8 [k, 3, s, s, 3] (`.npy`), its rows (`.parquet`), then
    its record (`.json`: both files' sizes and SHA-256, and the `config.json` they were built
    with), last because a chunk counts as done only when its files match its record."""
    stem = chunk_stem(index)
    files = {f"{stem}.npy": write_bytes(chunks_dir / f"{stem}.npy", npy_bytes(crops)),
             f"{stem}.parquet": write_bytes(chunks_dir / f"{stem}.parquet", parquet_bytes(rows))}
    write_bytes(chunks_dir / f"{stem}.json", json_bytes({"config_sha256": config_sha256, "files": files}))


def chunk_record(chunks_dir: Path, index: int) -> dict[str, Any] | None:
    """The record of chunk `index` (`write_chunk`), or None when it is missing or damaged."""
    stem = chunk_stem(index)
    record = read_json_object(chunks_dir / f"{stem}.json")
    files = record.get("files") if record is not None else None
    names = {f"{stem}.npy", f"{stem}.parquet"}
    if not isinstance(files, dict) or set(files) != names or not all(map(is_record, files.values())):
        return None
    return record


def chunk_verifies(chunks_dir: Path, index: int, config_sha256: str) -> bool:
    """Whether chunk `index` is done: its record exists, names the cache's `config.json`
    (`config_sha256`) and both its files match it (read and hashed: about 2.4 MB per chunk)."""
    record = chunk_record(chunks_dir, index)
    return (record is not None and record.get("config_sha256") == config_sha256
            and all(file_verifies(chunks_dir / name, entry) for name, entry in record["files"].items()))


def chunk_recorded(chunks_dir: Path, index: int) -> bool:
    """Whether chunk `index` has its record (its files were written; not checked here)."""
    return (chunks_dir / f"{chunk_stem(index)}.json").exists()


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
    config = read_json_object(folder / CONFIG)
    if config is None:
        raise ValueError(
            f"{folder / CONFIG} is damaged (not a JSON object) and no finished chunk records the "
            f"settings it held; delete the folder {folder} and build the cache again."
        )
    return config


def _recorded_configs(chunks_dir: Path) -> set[str]:
    """The `config.json` digests the chunks in `chunks_dir` record they were built with."""
    records = (read_json_object(path) for path in chunks_dir.glob("chunk-*.json")
               if path.stem[len("chunk-"):].isdigit())  # not a temporary file ("chunk-00003.tmp-PID.json")
    return {str(record.get("config_sha256")) for record in records if record is not None}


def _check_config_change(folder: Path, config: dict, data: bytes) -> None:
    """`config.json` differs from `data` (`config` as JSON): rewrite it when every recorded
    chunk was built with `config` (the file was damaged or edited after) or it holds the same
    settings; ValueError naming the differences (or the damage) otherwise."""
    if _recorded_configs(folder / CHUNKS) == {file_record(data)[DIGEST]}:
        logger.warning("%s did not hold the settings its chunks were built with: written again.", folder / CONFIG)
        write_bytes(folder / CONFIG, data)
        return
    differences = config_differences(read_config(folder), config)
    if differences:
        raise ValueError(
            f"Cache {folder.name!r} in {folder} holds a cache built from a different table or "
            f"with other settings (differs: {', '.join(differences)}). Choose another cache "
            f"name (`--name` of `c3ae cache build-cache`), or delete {folder} to rebuild it."
        )
    write_bytes(folder / CONFIG, data)  # the same settings, written another way


def prepare_cache_folder(folder: Path, table: pd.DataFrame, config: dict) -> str:
    """Create the folder, or check that an existing one was started with the same input; write
    `config.json` and `table.parquet` where they are missing or damaged. Returns the SHA-256 of
    `config.json`, which every chunk records."""
    paths.ensure_dir(folder / CHUNKS)
    data = json_bytes(config)
    existing = read_or_none(folder / CONFIG)
    if existing is None:
        write_bytes(folder / CONFIG, data)
    elif existing != data:
        _check_config_change(folder, config, data)
    table_data = parquet_bytes(table)
    if read_or_none(folder / TABLE) != table_data:
        write_bytes(folder / TABLE, table_data)
    return file_record(data)[DIGEST]


def _recorded_chunk_files(chunks_dir: Path, num_chunks: int) -> dict[str, Any]:
    """The records of every chunk file, keyed by their paths in the cache folder ("chunks/...")."""
    files = {}
    for index in range(num_chunks):
        record = chunk_record(chunks_dir, index)
        for name, entry in (record["files"] if record is not None else {}).items():
            files[f"{CHUNKS}/{name}"] = entry
    return files


def write_summary(folder: Path, manifest: pd.DataFrame, failures: pd.DataFrame, num_chunks: int,
                  chunk_size: int) -> None:
    """Write `failures.csv`, `checksums.json` (the record of every file of the cache, from the
    chunks' records, and the chunk size, for `repair_command`), then `manifest.parquet`: last,
    its presence marks the cache finished."""
    files = _recorded_chunk_files(folder / CHUNKS, num_chunks)
    for name in (CONFIG, TABLE):
        files[name] = file_record((folder / name).read_bytes())
    files[FAILURES] = write_bytes(folder / FAILURES, failures.to_csv(index=False).encode())
    manifest_data = parquet_bytes(manifest)
    files[MANIFEST] = file_record(manifest_data)
    write_bytes(folder / CHECKSUMS, json_bytes({"algorithm": DIGEST, "chunk_size": chunk_size, "files": files}))
    write_bytes(folder / MANIFEST, manifest_data)


def summary_verifies(folder: Path, num_chunks: int) -> bool:
    """Whether the finished cache's summary is whole: its manifest exists, `checksums.json`
    records the chunks' current records and the summary files match it (the chunks themselves
    are checked by `chunk_verifies`)."""
    checksums = read_json_object(folder / CHECKSUMS)
    files = checksums.get("files") if checksums is not None else None
    if not (folder / MANIFEST).exists() or not isinstance(files, dict):
        return False
    chunk_files = {name: entry for name, entry in files.items() if name.startswith(f"{CHUNKS}/")}
    return (chunk_files == _recorded_chunk_files(folder / CHUNKS, num_chunks)
            and all(file_verifies(folder / name, files.get(name)) for name in SUMMARY_FILES))
