"""Notebook 01 runs in the quick profile and writes the three metadata tables with splits."""

from __future__ import annotations

import pandas as pd
import pytest

from c3ae_utils import datasets, paths

EXPECTED_ROWS = {"utkface": 22_207, "fgnet": 1_002, "wiki": 38_138}
COLUMNS = ["path", "age", "gender", "subject", "dataset", "split"]

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def executed(course_run):
    return course_run.run("01")


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_notebook_01_writes_the_metadata_table(executed, name: str) -> None:
    table = pd.read_parquet(paths.metadata_path(name))
    assert len(table) == EXPECTED_ROWS[name]
    assert set(COLUMNS) <= set(table.columns)
    assert (table["dataset"] == name).all() and table["path"].is_unique
    assert table["age"].dtype.kind == "i"
    assert set(table["gender"].dropna()) <= {"female", "male"}
    assert table.equals(datasets.read_metadata_table(name))


def test_notebook_01_splits_follow_the_protocols(executed) -> None:
    utkface = pd.read_parquet(paths.metadata_path("utkface"))
    assert utkface["split"].value_counts().to_dict() == {"train": 15_545, "val": 3_331, "test": 3_331}
    assert utkface["split"].equals(datasets.split(utkface.drop(columns="split"), seed=0))
    fgnet = pd.read_parquet(paths.metadata_path("fgnet"))
    assert (fgnet["split"] == "train").all(), "FG-NET is evaluated with leave-one-subject-out folds"
    assert fgnet["subject"].nunique() == 82
    wiki = pd.read_parquet(paths.metadata_path("wiki"))
    assert set(wiki["split"]) == {"train", "val", "test"}
    assert abs((wiki["split"] == "test").mean() - 0.15) < 0.005
    assert wiki["age"].between(0, 100).all() and wiki["gender"].notna().all()


def test_notebook_01_saves_its_figures(executed) -> None:
    for name in ("01_wiki_cleaning_funnel", "01_age_imbalance", "01_faces_by_decade_utkface",
                 "01_faces_by_decade_fgnet", "01_age_gender_distributions", "01_wiki_raw_age_noise"):
        assert (paths.figures_dir() / f"{name}.png").stat().st_size > 10_000, name
