"""IMDB-WIKI end to end, the path a user of the reference implementation takes: the official
archive from its home -> `.mat` parsing and cleaning -> face cache -> `c3ae train --dataset
wiki|imdb` -> evaluation.

The official archives (0.8 and 7 GB) are out of reach here, so `imdb_wiki_standin` builds
stand-ins of real faces laid out as `wiki_crop.tar` and `imdb_crop.tar` are, with planted rows
the clean-up must drop; a local HTTP server serves them at the official path, the registry's
URL pointed at it (`datasets.fetch` takes a registry entry with another URL). The real
`wiki.mat`'s parsing and cleaning is tested in test_datasets.py. The fetch, the cleaning funnel
and `c3ae cache build-cache` (through `cli.main`, the console script's entry) run in this
process; so does `c3ae train`, exactly as typed, offline (nothing may need the network after
the fetch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from imdb_wiki_standin import DROPPED, PHOTOS_PER_CELEBRITY, Standin, build_standins
from official_homes import OfficialHome, serving

from c3ae_utils import cli, datasets, evaluation, faces, training

pytestmark = pytest.mark.slow

DATASETS = ("wiki", "imdb")
KEPT = 150  # clean rows per stand-in (plus the planted `DROPPED` ones)
EPOCHS = 5
BATCH_SIZE = 4
LOCATIONS = ("C3AE_DATA_DIR", "C3AE_DOWNLOAD_DIR", "C3AE_CACHE_DIR", "C3AE_ARTIFACTS_DIR",
             "C3AE_FIGURES_DIR", "C3AE_DATA_MIRROR", "C3AE_OFFLINE")


@dataclasses.dataclass
class Pipeline:
    """What one dataset's path produced: the raw and cleaned tables, the cache, the run and its
    evaluation on the validation split."""

    raw: pd.DataFrame
    cleaned: pd.DataFrame
    cache: faces.FaceCache
    run: training.Run
    validation: evaluation.Evaluation


@pytest.fixture(scope="module")
def course_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh course home (`C3AE_HOME`) with no data mirror: a user with no copies at all."""
    home = tmp_path_factory.mktemp("imdb_wiki_home")
    patch = pytest.MonkeyPatch()
    for variable in LOCATIONS:
        patch.delenv(variable, raising=False)
    patch.setenv("C3AE_HOME", str(home))
    yield home
    patch.undo()


@pytest.fixture(scope="module")
def home_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder served as the official home's root."""
    return tmp_path_factory.mktemp("official_home")


@pytest.fixture(scope="module")
def standins(utkface_folder: Path, home_folder: Path) -> dict[str, Standin]:
    """Both archives, where the official URLs put them (`cvl/rrothe/imdb-wiki/static/`)."""
    official = urllib.parse.urlsplit(datasets.get_spec("wiki").downloads[0].url).path
    static = home_folder / official.lstrip("/").rsplit("/", 1)[0]
    static.mkdir(parents=True)
    return build_standins(utkface_folder, static, KEPT)


@pytest.fixture(scope="module")
def official_home(home_folder: Path, standins: dict[str, Standin]) -> Iterator[OfficialHome]:
    with serving(home_folder) as server:
        yield server


def _train_command(name: str) -> str:
    """`c3ae train --dataset NAME ...` through `cli.main` (the console script's entry; in this
    process, which has TensorFlow loaded already), offline; what it printed."""
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("C3AE_OFFLINE", "1")
        code = cli.main(["train", "--dataset", name, "--epochs", str(EPOCHS),
                         "--batch-size", str(BATCH_SIZE), "--verbose", "0"])
    assert code == 0, printed.getvalue()[-3000:]
    return printed.getvalue()


def _run_pipeline(name: str, official_home: OfficialHome) -> Pipeline:
    """Fetch `name` from the stand-in home, clean it, cache its faces, train and evaluate."""
    spec = datasets.get_spec(name)
    remote = dataclasses.replace(spec.downloads[0], url=official_home.url_for(spec.downloads[0].url))
    datasets.fetch(dataclasses.replace(spec, downloads=(remote,)), progress=False)
    raw = datasets.load_metadata(name, clean=False)
    cleaned = datasets.load_metadata(name)
    assert cli.main(["cache", "build-cache", "--dataset", name, "--workers", "1"]) == 0
    cache = faces.load_cache(name)
    run_folder = _train_command(name).split("run folder: ", 1)[1].splitlines()[0]
    run = training.load_run(run_folder)
    return Pipeline(raw, cleaned, cache, run, evaluation.evaluate(run.path, cache, "val"))


@pytest.fixture(scope="module")
def pipelines(course_home: Path, official_home: OfficialHome) -> dict[str, Pipeline]:
    return {name: _run_pipeline(name, official_home) for name in DATASETS}


@pytest.mark.parametrize("name", DATASETS)
def test_fetch_takes_the_official_archive_from_its_home(
    name: str, pipelines: dict[str, Pipeline], official_home: OfficialHome, standins: dict[str, Standin],
    course_home: Path,
) -> None:
    official_path = urllib.parse.urlsplit(datasets.get_spec(name).downloads[0].url).path
    assert official_home.requested.count(official_path) == 1
    folder = course_home / "data" / "raw" / name
    assert (folder / datasets.MARKER).is_file() and (folder / f"{name}.mat").is_file()
    assert not (folder / f"{name}_crop" / f"{name}.mat").exists(), "the .mat moves out of <name>_crop/"
    photos = sorted(path.relative_to(folder / f"{name}_crop").as_posix()
                    for path in (folder / f"{name}_crop").glob("[0-9][0-9]/*.jpg"))
    assert len(photos) == standins[name].rows
    download = course_home / "data" / "downloads" / name / f"{name}_crop.tar"
    assert download.read_bytes() == standins[name].archive.read_bytes()
    recorded = json.loads(download.with_name(f"{name}_crop.tar.json").read_text())
    assert recorded["sha256"] == datasets.file_digest(standins[name].archive)


@pytest.mark.parametrize("name", DATASETS)
def test_cleaning_funnel_drops_exactly_the_planted_rows(
    name: str, pipelines: dict[str, Pipeline], standins: dict[str, Standin]
) -> None:
    standin, pipeline = standins[name], pipelines[name]
    report = datasets.cleaning_report(pipeline.raw)
    assert report["dropped"].tolist() == [0, *DROPPED.values(), 0], report
    assert report["remaining"].iloc[0] == standin.rows == len(pipeline.raw)
    assert report["remaining"].iloc[-1] == len(standin.expected) == len(pipeline.cleaned) == KEPT
    assert pipeline.raw["image_available"].all()


@pytest.mark.parametrize("name", DATASETS)
def test_cleaned_rows_carry_each_photos_true_age_and_gender(
    name: str, pipelines: dict[str, Pipeline], standins: dict[str, Standin], course_home: Path
) -> None:
    cleaned = pipelines[name].cleaned
    crop_folder = course_home / "data" / "raw" / name / f"{name}_crop"
    found = {Path(path).relative_to(crop_folder).as_posix(): (age, gender)
             for path, age, gender in zip(cleaned["path"], cleaned["age"], cleaned["gender"], strict=True)}
    assert found == standins[name].expected
    assert (cleaned["dataset"] == name).all()
    if name == "wiki":
        assert cleaned["subject"].isna().all()
    else:  # celeb_id: every celebrity's photos share one subject
        sizes = cleaned.groupby("subject").size()
        assert sizes.max() == PHOTOS_PER_CELEBRITY and len(sizes) >= KEPT // PHOTOS_PER_CELEBRITY


@pytest.mark.parametrize("name", DATASETS)
def test_face_cache_holds_the_cleaned_photos_with_their_splits(
    name: str, pipelines: dict[str, Pipeline]
) -> None:
    pipeline = pipelines[name]
    table = pipeline.cache.table
    assert len(table) + len(pipeline.cache.failures) == len(pipeline.cleaned)
    assert len(table) >= 0.9 * len(pipeline.cleaned), pipeline.cache.failures
    ages = pipeline.cleaned.set_index("path")["age"]
    assert (table["age"].to_numpy() == ages.loc[table["path"]].to_numpy()).all()
    assert set(table["split"]) == {"train", "val", "test"}
    if name == "imdb":  # subject-disjoint: no celebrity in two splits
        assert (table.groupby("subject")["split"].nunique() == 1).all()


@pytest.mark.parametrize("name", DATASETS)
def test_train_command_beats_predicting_the_mean_age(name: str, pipelines: dict[str, Pipeline]) -> None:
    pipeline = pipelines[name]
    run, table = pipeline.run, pipeline.cache.table
    assert run.config.dataset == name and run.config.cache_name == name
    assert len(run.history) == EPOCHS and np.isfinite(run.history["val_age_mae"]).all()
    validation = table.loc[table["split"] == "val", "age"]
    mean_age = table.loc[table["split"] == "train", "age"].mean()
    mean_predictor = float((validation - mean_age).abs().mean())  # one guess for every face
    measured = pipeline.validation.metrics
    assert measured["count"] == run.metrics["val_samples"] == len(validation)
    assert measured["mae"] == pytest.approx(run.metrics["val_mae"], abs=1e-3)
    assert measured["mae"] < mean_predictor, (name, measured["mae"], mean_predictor)
    print(f"{name}: val MAE {measured['mae']:.2f} vs {mean_predictor:.2f} predicting the mean age "
          f"({len(validation)} val faces)")
