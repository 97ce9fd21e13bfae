"""The saved metadata tables (parquet) and the summaries notebook 01 shows of them.

Contract: `write_metadata_table(table, name)` saves a table that has a `split` column to
`paths.metadata_path(name)` atomically (a reader never sees half a file);
`read_metadata_table(name)` reads it back, or raises FileNotFoundError saying which notebook
writes it; `metadata_table(name)` is that table, or the same table made now when notebook 01
has not saved it. `summarize` and `age_bin_counts` take {dataset name: table} and return one
summary DataFrame; they read only the age, gender and subject columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from c3ae_utils import paths
from c3ae_utils.datasets.cleaning import load_metadata
from c3ae_utils.datasets.splits import has_subjects, protocol_split


def summarize(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per dataset: images, subjects, age range and median (years), gender shares (%)."""
    rows = {}
    for name, table in tables.items():
        gender = table["gender"].value_counts(normalize=True, dropna=False) * 100
        rows[name] = {
            "images": len(table),
            "subjects": int(table["subject"].nunique()) if has_subjects(table) else pd.NA,
            "min age": int(table["age"].min()),
            "median age": float(table["age"].median()),
            "max age": int(table["age"].max()),
            "female %": round(float(gender.get("female", 0.0)), 1),
            "male %": round(float(gender.get("male", 0.0)), 1),
            "gender unknown %": round(float(gender[gender.index.isna()].sum()), 1),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def age_bin_counts(tables: dict[str, pd.DataFrame], width: int = 10, num_bins: int = 12) -> pd.DataFrame:
    """Images per age bin ("0-9", "10-19", ...; the last bin pools older ages), one column per dataset.

    `width` is in years. The default 12 bins of 10 years are C3AE's bins (0, 10, ..., 110).
    """
    labels = [f"{width * i}-{width * i + width - 1}" for i in range(num_bins)]
    counts = {}
    for name, table in tables.items():
        bins = np.minimum(np.asarray(table["age"], dtype=np.int64) // width, num_bins - 1).clip(min=0)
        counts[name] = np.bincount(bins, minlength=num_bins)
    return pd.DataFrame(counts, index=pd.Index(labels, name="age bin"))


def write_metadata_table(table: pd.DataFrame, name: str) -> Path:
    """Save a metadata table (with its `split` column) to `paths.metadata_path(name)`."""
    if "split" not in table:
        raise ValueError("Add a 'split' column (datasets.split) before saving the table.")
    target = paths.metadata_path(name)
    paths.ensure_dir(target.parent)
    return paths.atomic_write(target, table.to_parquet)


def read_metadata_table(name: str) -> pd.DataFrame:
    """The metadata table notebook 01 saved for `name` (columns as `load_metadata` plus `split`)."""
    source = paths.metadata_path(name)
    if not source.exists():
        raise FileNotFoundError(
            f"{source} does not exist: run notebooks/01_explore_the_data.ipynb first "
            f"(or save one with datasets.write_metadata_table)."
        )
    return pd.read_parquet(source)


def metadata_table(name: str, seed: int = 0) -> pd.DataFrame:
    """The metadata table (with `split`) of dataset `name`: notebook 01's saved table if there
    is one, otherwise `load_metadata(name)` with `protocol_split(seed)` (the table notebook 01
    makes with its default settings)."""
    if paths.metadata_path(name).exists():
        return read_metadata_table(name)
    table = load_metadata(name)
    table["split"] = protocol_split(table, name, seed=seed)
    return table
