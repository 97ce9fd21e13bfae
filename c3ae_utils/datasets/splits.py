"""Deterministic partitions of a metadata table: train/val/test, LOSO folds, subsets.

Contract: results depend only on the rows (their paths, ages, subjects, splits) and `seed`,
never on row order or on global random state. `split` labels each row "train", "val" or
"test" (subject-disjoint when the table has subjects, else stratified by age decade, the
decades of `age_encoding.decade`); `select_split` gives the positions of one split (or
`ALL`); `loso_folds` yields FG-NET's leave-one-subject-out folds; `subsample` draws a subset
that keeps the split and age-decade proportions. Invalid arguments raise ValueError.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from c3ae_utils import age_encoding
from c3ae_utils.datasets.parsers import STRING

SPLITS = ("train", "val", "test")
ALL = "all"  # `select_split`'s name for every row
SPLIT_CHOICES = (*SPLITS, ALL)


def has_subjects(table: pd.DataFrame) -> bool:
    """True when `table` has a `subject` column with at least one known subject."""
    return "subject" in table and bool(table["subject"].notna().any())


def _stable_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions sorted by path (or index), so results do not depend on row order."""
    key = table["path"].astype(str).to_numpy() if "path" in table else np.asarray(table.index)
    return np.argsort(key, kind="stable")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    """ValueError unless both fractions are in [0, 1) and sum to less than 1."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) "
            "and sum to less than 1."
        )


def _subject_disjoint_labels(table: pd.DataFrame, rng: np.random.Generator,
                             val_fraction: float, test_fraction: float) -> np.ndarray:
    """Labels (object [n]) assigning whole subjects, shuffled, to test, then val, then train."""
    # Rows without a subject count as subjects of their own.
    own = np.array([f"row:{label}" for label in table.index], dtype=object)
    keys = table["subject"].astype(object).where(table["subject"].notna(), own)
    sizes = keys.value_counts().sort_index()
    shuffled = sizes.index.to_numpy()[rng.permutation(len(sizes))]
    quota = {"test": test_fraction * len(table), "val": val_fraction * len(table)}
    assigned: dict[object, str] = {}
    filled = {"test": 0, "val": 0}
    for subject in shuffled:
        for name in ("test", "val"):
            if filled[name] + sizes[subject] / 2 <= quota[name]:
                assigned[subject] = name
                filled[name] += sizes[subject]
                break
        else:
            assigned[subject] = "train"
    return keys.map(assigned).to_numpy(dtype=object)


def _stratified_labels(table: pd.DataFrame, rng: np.random.Generator,
                       val_fraction: float, test_fraction: float) -> np.ndarray:
    """Labels (object [n]) with each age decade contributing the same val/test fractions."""
    labels = np.full(len(table), "train", dtype=object)
    order = _stable_order(table)
    decades = age_encoding.decade(table["age"])
    for decade in np.unique(decades):
        members = order[decades[order] == decade]
        members = members[rng.permutation(len(members))]
        num_test = int(round(test_fraction * len(members)))
        num_val = int(round(val_fraction * len(members)))
        labels[members[:num_test]] = "test"
        labels[members[num_test:num_test + num_val]] = "val"
    return labels


def split(table: pd.DataFrame, seed: int = 0, val_fraction: float = 0.15,
          test_fraction: float = 0.15) -> pd.Series:
    """Deterministic train/val/test labels for the rows of `table` (same index, name "split").

    Tables with subjects (FG-NET subject, IMDB celeb_id) are split subject-disjoint: whole
    subjects, shuffled with `seed`, fill test, then val, then train by row count. Tables
    without subjects (UTKFace, WIKI) are stratified by age decade: each decade contributes
    the same fractions. The result depends only on the rows (paths), ages, subjects and seed.
    """
    _check_fractions(val_fraction, test_fraction)
    if table.empty:
        raise ValueError("Cannot split an empty table.")
    if "age" not in table:
        raise ValueError("The table needs an 'age' column; build it with datasets.load_metadata.")
    rng = np.random.default_rng(seed)
    make_labels = _subject_disjoint_labels if has_subjects(table) else _stratified_labels
    labels = make_labels(table, rng, val_fraction, test_fraction)
    return pd.Series(pd.array(labels, dtype=STRING), index=table.index, name="split")


LOSO_DATASETS = ("fgnet",)  # evaluated by leave-one-subject-out folds (the paper's FG-NET protocol)


def protocol_split(table: pd.DataFrame, dataset: str, seed: int = 0, val_fraction: float = 0.15,
                   test_fraction: float = 0.15) -> pd.Series:
    """The split the course gives `dataset`'s rows (same index, name "split"): every row
    "train" for a leave-one-subject-out dataset (FG-NET, whose test folds `loso_folds` makes
    later), else `split(table, seed, val_fraction, test_fraction)`."""
    if dataset in LOSO_DATASETS:
        return pd.Series(pd.array(["train"] * len(table), dtype=STRING), index=table.index, name="split")
    return split(table, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)


def select_split(table: pd.DataFrame, split: str) -> np.ndarray:
    """Positions (int64 `[k]`) of the rows of `table` in `split` (`ALL` = "all": every row).

    ValueError for a `split` outside `SPLIT_CHOICES`, for a table without a `split` column
    (unless `split` is "all"), and when no row is in `split` (naming the splits present).
    """
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {SPLIT_CHOICES}; got {split!r}.")
    if split == ALL:
        return np.arange(len(table), dtype=np.int64)
    if "split" not in table:
        raise ValueError("The table has no `split` column; use split='all'.")
    in_split = (table["split"] == split).fillna(False).to_numpy(dtype=bool)
    positions = np.flatnonzero(in_split).astype(np.int64)
    if positions.size == 0:
        found = sorted(table["split"].dropna().unique().tolist())
        raise ValueError(f"No rows in split {split!r}; the table has splits {found}.")
    return positions


def loso_folds(table: pd.DataFrame) -> Iterator[tuple[str, pd.Index, pd.Index]]:
    """Leave-one-subject-out folds (FG-NET's protocol): (subject, train_index, test_index).

    One fold per subject, in sorted subject order; the indexes are labels of `table.index`.
    """
    if "subject" not in table or table["subject"].isna().any():
        raise ValueError("Leave-one-subject-out needs a 'subject' for every row (e.g. FG-NET).")
    subjects = table["subject"].astype(str)
    for subject in sorted(subjects.unique()):
        held_out = (subjects == subject).to_numpy()
        yield subject, table.index[~held_out], table.index[held_out]


def _largest_remainder(sizes: pd.Series, total: int) -> pd.Series:
    """Split `total` across groups in proportion to `sizes` (integers summing to `total`)."""
    exact = sizes / sizes.sum() * total
    counts = np.floor(exact).astype(int)
    leftover = total - int(counts.sum())
    if leftover:
        remainders = (exact - counts).sort_values(ascending=False, kind="stable")
        counts[remainders.index[:leftover]] += 1
    return counts.clip(upper=sizes)


def _draw_by_decade(members: np.ndarray, decades: np.ndarray, count: int,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """Draw `count` of the row positions `members`, allotted to age decades by their sizes."""
    decade_sizes = pd.Series(decades[members]).value_counts().sort_index()
    chosen = []
    for decade, decade_count in _largest_remainder(decade_sizes, count).items():
        in_decade = members[decades[members] == decade]
        chosen.append(in_decade[rng.permutation(len(in_decade))[:decade_count]])
    return chosen


def subsample(table: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """A deterministic subset of `n` rows that keeps the age mix (and the split proportions).

    Rows are allotted to the `split` groups (if the column exists) in proportion to their
    sizes, then within each split to age decades, and drawn at random with `seed`. The rows
    keep their original order and index. `n=None` (or `n >= len(table)`) returns everything.
    """
    if n is None or n >= len(table):
        return table.copy()
    if n <= 0:
        raise ValueError(f"subsample needs a positive n (or None for all rows), got {n}.")
    rng = np.random.default_rng(seed)
    order = _stable_order(table)
    groups = table["split"].astype(str).to_numpy() if "split" in table else np.full(len(table), ALL)
    decades = age_encoding.decade(table["age"])
    chosen: list[np.ndarray] = []
    group_sizes = pd.Series(groups).value_counts().sort_index()
    for group, group_count in _largest_remainder(group_sizes, n).items():
        in_group = order[groups[order] == group]
        chosen.extend(_draw_by_decade(in_group, decades, int(group_count), rng))
    positions = np.sort(np.concatenate(chosen))
    return table.iloc[positions].copy()
