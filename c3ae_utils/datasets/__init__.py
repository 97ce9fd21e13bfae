"""The datasets of the course: registry, download, extraction, parsers, cleaning and splits.

    python -m c3ae_utils.datasets list                 # the registry
    python -m c3ae_utils.datasets fetch utkface        # download (or copy from the mirror) and extract
    python -m c3ae_utils.datasets check-access wiki    # fail fast when the data cannot be obtained

Every dataset lands in `paths.raw_dir()/<name>/` with the same layout whether it came from
its official home or from the offline mirror (`C3AE_DATA_MIRROR`, laid out like the course's
`shared/data`); a `.complete` marker says the folder is whole. `load_metadata(name)` turns a
dataset into one tidy table (columns in docs/architecture.md); `split`, `loso_folds` and
`subsample` make deterministic partitions of such a table.

The modules, each importing only those before it:

| module       | what for                                                            |
| ------------ | ------------------------------------------------------------------- |
| `registry`   | `REGISTRY` of `DatasetSpec`s, `get_spec`, shared constants          |
| `downloader` | resumable, checksummed `download`; `file_digest`, `verify_checksum` |
| `extract`    | safe `extract_archive`                                              |
| `fetching`   | `fetch` from the mirror or official home; `is_complete`, `is_downloaded`, `check_access`, `link_mirror` |
| `parsers`    | UTKFace / FG-NET file names and IMDB-WIKI `.mat` -> tidy tables     |
| `cleaning`   | `load_metadata` and the IMDB-WIKI clean-up                          |
| `splits`     | `split`, `protocol_split`, `select_split`, `loso_folds`, `subsample` |
| `metadata`   | saved tables (`write/read_metadata_table`, `metadata_table`), summaries |
| `cli`        | `main`, `build_parser`: the CLI                                      |

This package re-exports their public names, so `datasets.fetch(...)` is all a caller needs.
"""

from __future__ import annotations

from c3ae_utils.datasets.cleaning import (
    CLEANING_STEPS,
    clean_imdb_wiki,
    cleaning_report,
    load_metadata,
)
from c3ae_utils.datasets.cli import build_parser, main
from c3ae_utils.datasets.downloader import (
    CHUNK_BYTES,
    DownloadError,
    download,
    file_digest,
    verify_checksum,
)
from c3ae_utils.datasets.extract import ARCHIVE_SUFFIXES, extract_archive, is_archive
from c3ae_utils.datasets.fetching import (
    check_access,
    fetch,
    is_complete,
    is_downloaded,
    link_mirror,
)
from c3ae_utils.datasets.metadata import (
    age_bin_counts,
    metadata_table,
    read_metadata_table,
    summarize,
    write_metadata_table,
)
from c3ae_utils.datasets.parsers import (
    STRING,
    UTKFACE_RACES,
    age_at_mid_year,
    datenum_to_date,
    parse_fgnet,
    parse_utkface,
    read_imdb_wiki_mat,
)
from c3ae_utils.datasets.registry import (
    LABELLED,
    MARKER,
    MIRROR_VARIABLE,
    OFFLINE_VARIABLE,
    REGISTRY,
    USER_AGENT,
    DatasetSpec,
    LayoutCheck,
    MirrorFile,
    RemoteFile,
    get_spec,
)
from c3ae_utils.datasets.splits import (
    ALL,
    LOSO_DATASETS,
    SPLIT_CHOICES,
    SPLITS,
    has_subjects,
    loso_folds,
    protocol_split,
    select_split,
    split,
    subsample,
)

__all__ = [
    # registry
    "REGISTRY", "LABELLED", "DatasetSpec", "RemoteFile", "MirrorFile", "LayoutCheck", "get_spec",
    "MARKER", "OFFLINE_VARIABLE", "MIRROR_VARIABLE", "USER_AGENT",
    # downloader, extract, fetching
    "DownloadError", "download", "file_digest", "verify_checksum", "CHUNK_BYTES",
    "extract_archive", "is_archive", "ARCHIVE_SUFFIXES", "fetch", "check_access", "is_complete",
    "is_downloaded", "link_mirror",
    # parsers
    "parse_utkface", "parse_fgnet", "read_imdb_wiki_mat", "age_at_mid_year", "datenum_to_date",
    "UTKFACE_RACES", "STRING",
    # cleaning
    "load_metadata", "cleaning_report", "clean_imdb_wiki", "CLEANING_STEPS",
    # splits
    "split", "protocol_split", "select_split", "loso_folds", "subsample", "has_subjects", "SPLITS", "ALL",
    "LOSO_DATASETS",
    "SPLIT_CHOICES",
    # metadata
    "summarize", "age_bin_counts", "write_metadata_table", "read_metadata_table",
    "metadata_table",
    # command line
    "build_parser",
    "main",
]
