"""Metadata tables of the labelled datasets, and the standard IMDB-WIKI clean-up.

Contract: `load_metadata(name)` fetches a labelled dataset if needed and returns its tidy
table (columns in docs/architecture.md and `parsers`), one row per image, RangeIndex; for
IMDB-WIKI it is cleaned unless `clean=False`. The clean-up is `CLEANING_STEPS`, applied in
order: `clean_imdb_wiki` keeps the rows passing every step, `cleaning_report` counts what
each step drops. Neither modifies its input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from c3ae_utils.datasets.fetching import fetch
from c3ae_utils.datasets.parsers import parse_fgnet, parse_utkface, read_imdb_wiki_mat
from c3ae_utils.datasets.registry import LABELLED, get_spec

IMDB_WIKI = ("wiki", "imdb")  # the datasets `CLEANING_STEPS` apply to

# The standard IMDB-WIKI clean-up, in the order the cleaning report counts it.
CLEANING_STEPS: tuple[tuple[str, Callable[[pd.DataFrame], pd.Series]], ...] = (
    ("no face found (face_score = -inf)", lambda table: pd.Series(np.isneginf(table["face_score"]), index=table.index)),
    ("second face (second_face_score not NaN)", lambda table: table["second_face_score"].notna()),
    ("face score below 1", lambda table: table["face_score"] < 1),
    ("age outside 0-100", lambda table: ~table["age"].between(0, 100)),
    ("unknown gender", lambda table: table["gender"].isna()),
)


def _cleaning_masks(table: pd.DataFrame) -> Iterator[tuple[str, pd.Series]]:
    """(label, bool mask of the rows the step drops) for each of `CLEANING_STEPS`."""
    for label, rule in CLEANING_STEPS:
        yield label, rule(table).fillna(False).astype(bool)


def clean_imdb_wiki(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a raw IMDB-WIKI table that pass every cleaning step (index reset)."""
    drop = pd.Series(False, index=table.index)
    for _, mask in _cleaning_masks(table):
        drop |= mask
    return table.loc[~drop].reset_index(drop=True)


def cleaning_report(name_or_table: str | pd.DataFrame) -> pd.DataFrame:
    """Rows dropped at each cleaning step, applied in order (columns step, dropped, remaining).

    Takes "wiki"/"imdb" (loads the raw metadata) or a raw table from
    `load_metadata(name, clean=False)`. The first row is the raw count, the last the kept one.
    """
    if isinstance(name_or_table, str):
        if name_or_table not in IMDB_WIKI:
            raise ValueError(f"Cleaning applies to 'wiki' and 'imdb', not {name_or_table!r}.")
        table = load_metadata(name_or_table, clean=False)
    else:
        table = name_or_table
    remaining = pd.Series(True, index=table.index)
    rows = [("raw entries", 0, len(table))]
    for label, mask in _cleaning_masks(table):
        dropped = int((remaining & mask).sum())
        remaining &= ~mask
        rows.append((label, dropped, int(remaining.sum())))
    rows.append(("kept", 0, int(remaining.sum())))
    return pd.DataFrame(rows, columns=["step", "dropped", "remaining"])


def load_metadata(name: str, clean: bool = True) -> pd.DataFrame:
    """The tidy table of a labelled dataset, fetching and extracting it on first use.

    Columns (docs/architecture.md): path (absolute), age (int, years), gender ("female" /
    "male" / <NA>), subject (str / <NA>), dataset, plus per-dataset extras (UTKFace race;
    FG-NET points_path; IMDB-WIKI scores, name, photo_taken, dob, face box, image_available).
    `clean` applies the IMDB-WIKI clean-up (see `cleaning_report`); UTKFace and FG-NET have
    nothing to clean. One row per image, RangeIndex.
    """
    get_spec(name)
    if name not in LABELLED:
        raise ValueError(f"{name!r} has no labels to tabulate; choose one of {', '.join(LABELLED)}.")
    folder = fetch(name)
    if name == "utkface":
        return parse_utkface(folder / "UTKFace")
    if name == "fgnet":
        return parse_fgnet(folder / "FGNET")
    table = read_imdb_wiki_mat(folder / f"{name}.mat", name, folder / f"{name}_crop")
    return clean_imdb_wiki(table) if clean else table
