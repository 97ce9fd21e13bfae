"""paths: locations from the environment, and the one atomic writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from c3ae_utils import paths


def test_atomic_write_replaces_the_file_in_one_step_keeping_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    target.write_text("old")
    seen = []

    def write(temporary: Path) -> None:
        seen.append(temporary)
        assert temporary.parent == tmp_path and temporary.suffix == ".keras"  # Keras needs it
        assert target.read_text() == "old"  # readers still see the old file meanwhile
        temporary.write_text("new")

    assert paths.atomic_write(target, write) == target
    assert target.read_text() == "new" and not seen[0].exists()
    assert f".tmp-{os.getpid()}" in seen[0].name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "history.csv"
    target.write_text("epoch\n1\n")

    def broken(temporary: Path) -> None:
        temporary.write_text("epoch\n1\n2")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        paths.atomic_write(target, broken)
    assert target.read_text() == "epoch\n1\n" and sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]
    paths.write_text_atomic(tmp_path / "note.txt", "é")
    assert (tmp_path / "note.txt").read_text(encoding="utf-8") == "é"


def test_locations_follow_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("C3AE_CACHE_DIR", str(tmp_path / "c"))
    assert paths.runs_dir() == tmp_path / "a" / "runs"
    assert paths.metadata_path("fgnet") == tmp_path / "a" / "metadata" / "fgnet.parquet"
    assert paths.cache_dir() == tmp_path / "c"


VARIABLES = ("C3AE_DATA_DIR", "C3AE_DOWNLOAD_DIR", "C3AE_CACHE_DIR", "C3AE_ARTIFACTS_DIR", "C3AE_FIGURES_DIR")


def test_one_home_holds_every_folder_unless_a_folder_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("C3AE_HOME", str(tmp_path / "drive" / "c3ae-course"))
    home = tmp_path / "drive" / "c3ae-course"
    assert paths.course_home() == home
    assert paths.raw_dir() == home / "data" / "raw" and paths.download_dir() == home / "data" / "downloads"
    assert paths.cache_dir() == home / "data" / "cache" and paths.artifacts_dir() == home / "artifacts"
    assert paths.figures_dir() == home / "figures" / "generated"
    assert paths.metadata_path("fgnet").is_relative_to(home) and paths.runs_dir().is_relative_to(home)
    monkeypatch.setenv("C3AE_CACHE_DIR", str(tmp_path / "fast-disk"))
    assert paths.cache_dir() == tmp_path / "fast-disk"  # a folder's own variable still wins
    monkeypatch.delenv("C3AE_HOME")
    assert paths.artifacts_dir() == paths.repo_root() / "artifacts"


def test_colab_setup_changes_nothing_outside_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    from c3ae_utils import colab

    monkeypatch.delenv("C3AE_HOME", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert colab.setup() == paths.course_home() == paths.repo_root()
    assert "C3AE_HOME" not in os.environ
