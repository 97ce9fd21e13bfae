"""The face cache: a whole metadata table preprocessed once, on every core, into crops on disk.

The public face of the cache: every name other modules use, from the modules that own it.
`build_cache(table, cache_name)` runs `processing.process_images` (training policy by
default) over the table's `path` column in chunks, on a Dask cluster (`faces.cluster`: a
local one of worker processes, or an existing one), and `load_cache(cache_name)` gives the
result back as a `FaceCache`. From a terminal:

    python -m c3ae_utils.faces build-cache --dataset utkface [--max-images N]
        [--workers K | --scheduler tcp://HOST:8786]      (also `c3ae cache build-cache ...`)

| module | what it owns |
| --- | --- |
| `cache_checksums` | the record (size, SHA-256) of each file a build wrote, and the check |
| `cache_files` | the files of a cache: names, folder, `config.json`, chunk files and their records, manifest; `DamagedCache` |
| `cache_chunks` | one chunk: its job, its rows (`RESULT_COLUMNS`), the worker that writes it |
| `cache_build` | `build_cache`: chunk jobs, running them, merging them into the manifest |
| `cache_load` | `load_cache` (every file it reads checked), `FaceCache`, `yield_table` |
| `cli` | `build_parser`, `main`: the `c3ae cache` command line |

Layout (`paths.cache_dir() / cache_name /`):

| file | content |
| --- | --- |
| `config.json` | the settings the cache was built with (a re-run must match them) |
| `table.parquet` | the input metadata table, in processing order |
| `chunks/chunk-NNNNN.npy` | uint8 `[k, 3, 64, 64, 3]`: the crops of the chunk's k usable faces |
| `chunks/chunk-NNNNN.parquet` | one row per input image of the chunk: metadata, status, reason, pose |
| `chunks/chunk-NNNNN.json` | the record of the chunk's two files (size, SHA-256), written after them |
| `manifest.parquet` | every usable face, row-aligned with the concatenated crops |
| `failures.csv` | path, reason, detail for every image that gave no usable face |
| `checksums.json` | the record of every file above but itself and the chunk records |

Crops are RGB, ordered outer/middle/inner (`shapes.SCALE_NAMES`), raw 0-255 values; they
take 3 x 64 x 64 x 3 = 36,864 bytes per face, about 369 MB per 10,000 faces. Every file is
written atomically (`paths.atomic_write`), so an interrupted build resumes where it stopped
and ends byte-identical to an uninterrupted one on the same kind of workers (`cache_chunks`:
this process and single-threaded cluster workers differ in the last bits of a few boxes and
angles). A chunk counts as done only when its files match their record, and `load_cache`
checks every file it reads: a damaged cache is one line naming the file and the command that
rebuilds what does not verify. Cache names are plain folder names (`check_cache_name`).
Ctrl-C stops the workers at once and says what was kept; workers also end when the process
that started them dies.
"""

from __future__ import annotations

import sys

from c3ae_utils import cli as package_cli
from c3ae_utils.faces.cache_build import BuildInterrupted, build_cache, default_workers
from c3ae_utils.faces.cache_chunks import RESULT_COLUMNS
from c3ae_utils.faces.cache_files import (
    CACHE_FORMAT,
    CHECKSUMS,
    CHUNK_SIZE,
    MANIFEST,
    DamagedCache,
    cache_name,
    cache_path,
    check_cache_name,
    finished_caches,
    is_finished,
)
from c3ae_utils.faces.cache_load import FaceCache, load_cache, yield_table
from c3ae_utils.faces.cli import build_parser, main

__all__ = [
    "CACHE_FORMAT",
    "CHECKSUMS",
    "CHUNK_SIZE",
    "MANIFEST",
    "RESULT_COLUMNS",
    "BuildInterrupted",
    "DamagedCache",
    "FaceCache",
    "build_cache",
    "build_parser",
    "cache_name",
    "cache_path",
    "check_cache_name",
    "default_workers",
    "finished_caches",
    "is_finished",
    "load_cache",
    "main",
    "yield_table",
]

if __name__ == "__main__":
    sys.exit(package_cli.run(main, prog="c3ae cache"))
