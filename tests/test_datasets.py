"""Registry, mirror, parsers, cleaning and splits, on the real data of the mirror."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat
from utkface_releases import labelled_images, release_of

from c3ae_utils import age_encoding, datasets, paths

WIKI_CLEANED = 38_138  # mid-year convention; 38,137 with age = photo_taken - birth year
COMMON_COLUMNS = ["path", "age", "gender", "subject", "dataset"]


@pytest.fixture(scope="module")
def utkface(utkface_folder: Path) -> pd.DataFrame:
    return datasets.load_metadata("utkface")


@pytest.fixture(scope="module")
def fgnet(mirror: Path) -> pd.DataFrame:
    return datasets.load_metadata("fgnet")


@pytest.fixture(scope="module")
def wiki_raw(mirror: Path) -> pd.DataFrame:
    return datasets.load_metadata("wiki", clean=False)


# ------------------------------------------------------------------------------ registry


def test_registry_names_every_dataset_with_source_terms_and_citation() -> None:
    assert list(datasets.REGISTRY) == ["utkface", "fgnet", "wiki", "imdb", "reference", "demo"]
    for spec in datasets.REGISTRY.values():
        assert spec.downloads and spec.mirror and spec.layout
        assert all(re.match(r"https?://", remote.url) for remote in spec.downloads)
        assert spec.licence and spec.citation and spec.homepage.startswith("https://")
    utk = datasets.get_spec("utkface").downloads[0]
    assert (utk.size, utk.sha256) == (
        106_634_631, "2c0655397b498e81b82d685ee74bee8c2e4364a5897caf3afec6ea48929024a7")
    assert datasets.get_spec("fgnet").downloads[0].md5 == "1206978cac3626321b84c22b24cc8d19"
    assert all(r.sha256 is None for name in ("wiki", "imdb") for r in datasets.get_spec(name).downloads)


def test_registry_hashes_match_the_mirror_readme_and_files(mirror: Path) -> None:
    """The course mirror (with its README.md) holds all 17 checksummed files the registry
    names, as its README lists them; a folder of linked downloads (no mirror, `conftest.py`)
    holds only such files, byte for byte."""
    readme = mirror / "README.md"
    course_mirror = readme.is_file()
    listed = dict(
        (path, digest) for digest, path in
        re.findall(r"^([0-9a-f]{64})  (\S.*)$", readme.read_text(), re.MULTILINE)
    ) if course_mirror else {}
    checked = 0
    for spec in datasets.REGISTRY.values():
        for item in spec.mirror:
            if item.sha256 is None or not (course_mirror or (mirror / item.path).exists()):
                continue
            if course_mirror:
                assert listed[item.path] == item.sha256, item.path
            assert (mirror / item.path).stat().st_size == item.size
            assert datasets.file_digest(mirror / item.path) == item.sha256, item.path
            checked += 1
    held = sum(1 for path in mirror.rglob("*") if path.is_file() and path != readme)
    assert checked == (len(listed) if course_mirror else held) and checked >= (17 if course_mirror else 1)


def test_unknown_dataset_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="utkface, fgnet, wiki, imdb, reference, demo"):
        datasets.load_metadata("morph")
    with pytest.raises(ValueError, match="Unknown dataset"):
        datasets.fetch("adience")
    with pytest.raises(ValueError, match="no labels"):
        datasets.load_metadata("reference")


# ------------------------------------------------------------------------------ mirror


def test_fetch_from_the_mirror_extracts_both_utkface_parts(
    utkface_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path))
    folder = datasets.fetch("utkface", progress=False)  # the mirror's two parts, or the official archive
    assert folder == tmp_path / "utkface"
    assert len(list((folder / "UTKFace").iterdir())) == release_of(utkface_folder).images
    assert sorted(p.name for p in tmp_path.iterdir()) == ["utkface"], "no temporary folder left"
    marker = (folder / datasets.MARKER).stat().st_mtime_ns
    assert datasets.fetch("utkface") == folder
    assert (folder / datasets.MARKER).stat().st_mtime_ns == marker, "second fetch does nothing"


def test_fetch_from_the_mirror_gives_the_course_layout(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path))
    fgnet = datasets.fetch("fgnet")
    assert len(list((fgnet / "FGNET" / "images").glob("*.JPG"))) == 1_002
    assert len(list((fgnet / "FGNET" / "points").glob("*.pts"))) == 1_002
    assert (datasets.fetch("wiki") / "wiki.mat").stat().st_size == 3_800_373
    reference = datasets.fetch("reference")
    assert sorted(p.name for p in reference.iterdir() if p.name != datasets.MARKER) == [
        "c3ae_imdb_v89.h5", "example1.jpg", "example2.jpg", "imdb_focal_loss_c3ae_v84.h5",
        "pattern5.jpg", "timg.jpg"]
    demo = datasets.fetch("demo")
    assert (demo / "serengil_deepface" / "couple.jpg").exists()
    assert len(list(demo.glob("*/*.mp4"))) == 2


def test_a_damaged_mirror_file_is_refused_with_both_hashes(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = tmp_path / "mirror" / "imdb_wiki" / "wiki.mat"
    damaged.parent.mkdir(parents=True)
    data = bytearray((mirror / "imdb_wiki" / "wiki.mat").read_bytes())
    data[1000] ^= 0xFF  # same size, one byte flipped
    damaged.write_bytes(bytes(data))
    monkeypatch.setenv("C3AE_DATA_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path / "raw"))
    with pytest.raises(ValueError) as raised:
        datasets.fetch("wiki")
    assert datasets.get_spec("wiki").mirror[0].sha256 in str(raised.value)
    assert datasets.file_digest(damaged) in str(raised.value)
    assert not (tmp_path / "raw" / "wiki").exists()


def test_check_access_passes_with_the_mirror(mirror: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("C3AE_OFFLINE", "1")
    assert datasets.main(["check-access", "utkface"]) == 0
    assert datasets.main(["check-access", "imdb"]) == 1, "imdb.mat is not in the mirror"


# ------------------------------------------------------------------------------ UTKFace


def test_utkface_has_every_image_with_the_known_age_histogram(utkface: pd.DataFrame, utkface_folder: Path) -> None:
    release = release_of(utkface_folder)
    assert len(utkface) == labelled_images(utkface_folder) == release.images
    assert list(utkface.columns[:5]) == COMMON_COLUMNS
    assert (utkface["age"].min(), utkface["age"].max()) == (1, 116)
    decades = np.bincount(age_encoding.decade(utkface["age"])).tolist()
    assert decades == list(release.decades or decades) and sum(decades) == release.images
    assert utkface["path"].str.startswith(str(paths.raw_dir())).all()
    assert utkface["path"].is_unique and Path(utkface["path"].iloc[0]).is_file()
    assert set(utkface["gender"]) == {"male", "female"}
    assert set(utkface["race"].dropna()) == {"white", "black", "asian", "indian", "others"}
    assert utkface["subject"].isna().all() and (utkface["dataset"] == "utkface").all()


def test_utkface_irregular_names_are_parsed(utkface: pd.DataFrame) -> None:
    by_name = utkface.set_index(utkface["path"].map(lambda p: Path(p).name))
    no_race = ["39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
               "61_1_20170109150557335.jpg.chip.jpg"]
    assert by_name.loc[no_race, "race"].isna().all()
    assert by_name.loc[no_race, "gender"].tolist() == ["female"] * 3
    assert by_name.loc["24_0_1_20170116220224657 .jpg.chip.jpg", ["age", "gender", "race"]].tolist() == [
        24, "male", "black"]
    assert by_name.loc["55_0_0_20170116232725357jpg.chip.jpg", ["age", "race"]].tolist() == [55, "white"]
    assert utkface["race"].isna().sum() == 3


# ------------------------------------------------------------------------------ FG-NET


def test_fgnet_has_82_subjects_aged_0_to_69(fgnet: pd.DataFrame) -> None:
    assert len(fgnet) == 1_002
    assert list(fgnet.columns[:5]) == COMMON_COLUMNS
    assert fgnet["subject"].nunique() == 82
    assert (fgnet["age"].min(), fgnet["age"].max()) == (0, 69)
    assert fgnet.groupby("subject").size().between(6, 18).all()
    assert fgnet["gender"].isna().all()
    twins = fgnet[fgnet["path"].str.endswith(("001A43a.JPG", "001A43b.JPG"))]
    assert twins["age"].tolist() == [43, 43] and twins["subject"].tolist() == ["001", "001"]
    assert all(Path(p).is_file() for p in fgnet["points_path"].head(20))


# ------------------------------------------------------------------------------ WIKI


def test_wiki_raw_metadata_has_every_entry(wiki_raw: pd.DataFrame) -> None:
    assert len(wiki_raw) == 62_328
    assert list(wiki_raw.columns[:5]) == COMMON_COLUMNS
    first = wiki_raw.iloc[0]
    assert first["name"] == "Sami Jauhojärvi" and first["photo_taken"] == 2009
    assert first["dob"] == pd.Timestamp("1981-05-05") and first["age"] == 28
    assert first["path"] == str(paths.raw_dir() / "wiki" / "wiki_crop" / "17" / "10000217_1981-05-05_2009.jpg")
    assert wiki_raw["gender"].isna().sum() == 2_643
    assert np.isneginf(wiki_raw["face_score"]).sum() == 18_016
    assert not wiki_raw["image_available"].any(), "the mirror has wiki.mat without images"
    assert (wiki_raw["age"].min(), wiki_raw["age"].max()) == (-74, 1996)


def test_wiki_cleaning_report_counts_every_step(wiki_raw: pd.DataFrame) -> None:
    report = datasets.cleaning_report(wiki_raw)
    assert report["dropped"].tolist() == [0, 18_016, 4_096, 1_293, 49, 736, 0]
    assert report["remaining"].iloc[0] == 62_328 and report["remaining"].iloc[-1] == WIKI_CLEANED
    assert report.equals(datasets.cleaning_report("wiki"))
    cleaned = datasets.load_metadata("wiki")
    assert len(cleaned) == WIKI_CLEANED
    assert cleaned["age"].between(0, 100).all() and cleaned["gender"].notna().all()
    assert (cleaned["face_score"] >= 1).all() and cleaned["second_face_score"].isna().all()


def test_mid_year_convention_explains_38138_versus_38137(wiki_raw: pd.DataFrame) -> None:
    # Plain `photo_taken - birth year` keeps 38,137: two people born after 1 July and
    # "101" that way are 100 at mid-year (kept), one photo from the birth year gives -1.
    plain = wiki_raw.assign(age=wiki_raw["photo_taken"] - wiki_raw["dob"].dt.year)
    kept_mid = set(datasets.clean_imdb_wiki(wiki_raw)["entry"])
    kept_plain = set(datasets.clean_imdb_wiki(plain)["entry"])
    assert len(kept_plain) == 38_137
    assert sorted(kept_mid - kept_plain) == [21_523, 23_226]
    assert sorted(kept_plain - kept_mid) == [52_133]


def test_age_at_mid_year_counts_completed_years_on_first_of_july() -> None:
    births = np.array(["2000-06-30", "2000-07-01", "2000-07-02", "2000-12-31"], dtype="datetime64[D]")
    assert datasets.age_at_mid_year(births, np.full(4, 2010)).tolist() == [10, 10, 9, 9]
    # MATLAB datenum: 1 = 1 January of year 0, 719,529 = 1970-01-01.
    assert datasets.datenum_to_date(np.array([719_529, 723_671])).astype(str).tolist() == [
        "1970-01-01", "1981-05-05"]


# ------------------------------------------------------------------------------ bad .mat files


def mat_struct(count: int, with_celeb_id: bool = False) -> dict[str, object]:
    """An IMDB-WIKI-like struct with `count` entries (all ages 30, alternating gender)."""
    paths_cell = np.empty((1, count), dtype=object)
    names_cell = np.empty((1, count), dtype=object)
    boxes = np.empty((1, count), dtype=object)
    for i in range(count):
        paths_cell[0, i] = f"{i:02d}/{i}_1980-03-01_2010.jpg"
        names_cell[0, i] = f"Person {i // 2}"
        boxes[0, i] = np.array([[1.0, 2.0, 3.0, 4.0]])
    struct = {
        "dob": np.full((1, count), 723_241, dtype=np.int32),  # 1980-03-01
        "photo_taken": np.full((1, count), 2010, dtype=np.uint16),
        "full_path": paths_cell,
        "gender": np.array([[i % 2 for i in range(count)]], dtype=np.float64),
        "name": names_cell,
        "face_location": boxes,
        "face_score": np.full((1, count), 3.0),
        "second_face_score": np.full((1, count), np.nan),
    }
    if with_celeb_id:
        struct["celeb_id"] = np.array([[i // 2 + 1 for i in range(count)]], dtype=np.uint16)
    return struct


def test_a_mat_of_the_other_dataset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wiki.mat"
    savemat(path, {"imdb": mat_struct(4, with_celeb_id=True)})
    with pytest.raises(ValueError, match="holds the 'imdb' metadata, not 'wiki'"):
        datasets.read_imdb_wiki_mat(path, "wiki")


def test_an_unrelated_mat_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wiki.mat"
    savemat(path, {"weights": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"holds the variables \['weights'\], not 'wiki'"):
        datasets.read_imdb_wiki_mat(path, "wiki")
    broken = mat_struct(3)
    del broken["face_score"]
    savemat(path, {"wiki": broken})
    with pytest.raises(ValueError, match="lacks the IMDB-WIKI fields"):
        datasets.read_imdb_wiki_mat(path, "wiki")


def test_a_file_that_is_not_a_mat_is_refused(tmp_path: Path, mirror: Path) -> None:
    path = tmp_path / "wiki.mat"
    path.write_bytes(b"<html>404 Not Found</html>" * 10)
    with pytest.raises(ValueError, match="not a readable MATLAB .mat file"):
        datasets.read_imdb_wiki_mat(path, "wiki")
    path.write_bytes((mirror / "imdb_wiki" / "wiki.mat").read_bytes()[:100_000])  # truncated
    with pytest.raises(ValueError, match="not a readable MATLAB .mat file"):
        datasets.read_imdb_wiki_mat(path, "wiki")


def test_imdb_mat_gives_celebrity_subjects_and_subject_disjoint_splits(tmp_path: Path) -> None:
    path = tmp_path / "imdb.mat"
    savemat(path, {"imdb": mat_struct(40, with_celeb_id=True)})
    (tmp_path / "imdb_crop" / "00").mkdir(parents=True)
    (tmp_path / "imdb_crop" / "00" / "0_1980-03-01_2010.jpg").write_bytes(b"jpeg")
    table = datasets.read_imdb_wiki_mat(path, "imdb")
    assert table["subject"].tolist()[:4] == ["1", "1", "2", "2"]
    assert table["gender"].tolist()[:2] == ["female", "male"]
    assert (table["age"] == 30).all() and table["face_x2"].eq(3.0).all()
    assert table["image_available"].tolist()[:2] == [True, False]
    labels = datasets.split(table, seed=1)
    assert table.groupby("subject")[[]].size().size == 20
    assert (labels.groupby(table["subject"]).nunique() == 1).all(), "a subject spans two splits"
    assert set(labels) == {"train", "val", "test"}


# ------------------------------------------------------------------------------ splits


def test_utkface_split_is_deterministic_and_stratified(utkface: pd.DataFrame, utkface_folder: Path) -> None:
    labels = datasets.split(utkface, seed=0)
    assert labels.index.equals(utkface.index) and labels.name == "split"
    assert labels.equals(datasets.split(utkface, seed=0))
    assert labels.equals(datasets.split(utkface.iloc[::-1], seed=0).loc[utkface.index])
    assert not labels.equals(datasets.split(utkface, seed=1))
    counts = labels.value_counts().to_dict()
    assert counts == (release_of(utkface_folder).splits or counts) and sum(counts.values()) == len(utkface)
    decades = pd.Series(age_encoding.decade(utkface["age"]), index=utkface.index)
    for decade, group in labels.groupby(decades):
        test_count = int((group == "test").sum())
        assert abs(test_count - 0.15 * len(group)) <= 1, decade


def test_fgnet_split_keeps_subjects_together(fgnet: pd.DataFrame) -> None:
    labels = datasets.split(fgnet, seed=0)
    assert (labels.groupby(fgnet["subject"]).nunique() == 1).all()
    shares = labels.value_counts(normalize=True)
    assert abs(shares["test"] - 0.15) < 0.03 and abs(shares["val"] - 0.15) < 0.03
    assert labels.equals(datasets.split(fgnet, seed=0))


def test_loso_folds_hold_out_each_fgnet_subject_once(fgnet: pd.DataFrame) -> None:
    folds = list(datasets.loso_folds(fgnet))
    assert len(folds) == 82 and folds[0][0] == "001"
    held_out = pd.Index([]).append([test for _, _, test in folds])
    assert held_out.sort_values().equals(fgnet.index)
    for subject, train, test in folds[:5]:
        assert train.intersection(test).empty and len(train) + len(test) == len(fgnet)
        assert (fgnet.loc[test, "subject"] == subject).all()
    with pytest.raises(ValueError, match="subject"):
        next(datasets.loso_folds(fgnet.assign(subject=pd.NA)))


def test_split_refuses_bad_fractions_and_empty_tables(utkface: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="sum to less than 1"):
        datasets.split(utkface, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="empty"):
        datasets.split(utkface.iloc[:0])


def test_subsample_keeps_split_and_age_proportions(utkface: pd.DataFrame) -> None:
    table = utkface.assign(split=datasets.split(utkface, seed=0))
    small = datasets.subsample(table, 400, seed=0)
    assert len(small) == 400 and small.index.is_monotonic_increasing
    assert small.equals(datasets.subsample(table, 400, seed=0))
    assert small["split"].value_counts().to_dict() == {"train": 280, "val": 60, "test": 60}
    expected = np.bincount(age_encoding.decade(table["age"]), minlength=10) / len(table) * 400
    assert np.abs(np.bincount(age_encoding.decade(small["age"]), minlength=10) - expected).max() <= 2
    assert len(datasets.subsample(table, None)) == len(table)
    assert len(datasets.subsample(table, 10**6)) == len(table)
    with pytest.raises(ValueError, match="positive"):
        datasets.subsample(table, 0)


def test_select_split_gives_positions_and_names_the_choices() -> None:
    table = pd.DataFrame({"age": [1, 2, 3, 4], "split": pd.array(["train", "test", pd.NA, "train"],
                                                                  dtype="string")})
    assert datasets.select_split(table, "train").tolist() == [0, 3]
    assert datasets.select_split(table, "train").dtype == np.int64
    assert datasets.select_split(table, "all").tolist() == [0, 1, 2, 3]
    assert datasets.select_split(table.drop(columns="split"), "all").tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="'train', 'val', 'test', 'all'"):
        datasets.select_split(table, "validation")
    with pytest.raises(ValueError, match="no `split` column; use split='all'"):
        datasets.select_split(table.drop(columns="split"), "test")
    with pytest.raises(ValueError, match=re.escape("splits ['test', 'train']")):
        datasets.select_split(table, "val")


def test_protocol_split_keeps_fgnet_whole_for_its_subject_folds(fgnet: pd.DataFrame) -> None:
    table = fgnet.drop(columns="split", errors="ignore")
    whole = datasets.protocol_split(table, "fgnet")
    assert (whole == "train").all() and whole.index.equals(table.index) and whole.name == "split"
    assert datasets.LOSO_DATASETS == ("fgnet",)
    # any other dataset gets `split`, exactly
    utkface_like = table.assign(subject=pd.NA)
    assert datasets.protocol_split(utkface_like, "utkface", seed=3).equals(datasets.split(utkface_like, seed=3))
