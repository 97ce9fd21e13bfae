"""The tests' data on a user's machine, not only beside CI's data folder (issue 29, part 6).

A clone in a temporary folder (the working tree's files, no `../shared` beside it, no
`C3AE_DATA_MIRROR`) runs pytest with this interpreter, `PYTHONPATH` on the clone so its own
code runs: with nothing downloaded it stops at once with one line saying what to run first;
after `datasets.fetch` has put official archives into the clone's download folder (the official
homes stood in for by a server on 127.0.0.1, the registry's URLs pointed at it, its checksums
unchanged), a data-needing test selection passes from them. The reference files served are the
real official files; `wiki_crop.tar` (0.8 GB, no published checksum) is a stand-in laid out as
the official one, holding the real `wiki.mat`. `link_mirror` is checked here in this process.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from official_homes import OfficialHome, serving

from c3ae_utils import datasets

REPO = Path(__file__).resolve().parents[1]
SERVED = ("reference", "wiki")  # what the stand-in home serves (8 MB in all)
WIKI_TESTS = "wiki or mid_year_convention or not_a_mat or damaged_mirror"  # tests/test_datasets.py on the real wiki.mat


def _official_path(home: Path, remote: datasets.RemoteFile) -> Path:
    """Where `remote` lies under the served folder: its official URL's path."""
    path = home / urllib.parse.urlsplit(remote.url).path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _stand_in_home(mirror: Path, home: Path) -> None:
    """The official files of `SERVED` at their official paths: the reference files are the
    mirror's (the same bytes, the registry's SHA-256s), wiki_crop.tar holds the real wiki.mat
    where the official tar does (`wiki_crop/wiki.mat`)."""
    reference = datasets.get_spec("reference")
    for remote, item in zip(reference.downloads, reference.mirror, strict=True):
        assert remote.sha256 == item.sha256
        _official_path(home, remote).symlink_to(mirror / item.path)
    with tarfile.open(_official_path(home, datasets.get_spec("wiki").downloads[0]), "w") as archive:
        archive.add(mirror / "imdb_wiki" / "wiki.mat", arcname="wiki_crop/wiki.mat")


@pytest.fixture(scope="module")
def official_homes(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfficialHome]:
    home = tmp_path_factory.mktemp("official_homes")
    _stand_in_home(mirror, home)
    with serving(home) as server:
        yield server


def _fetch_from(homes: OfficialHome, name: str) -> Path:
    """`make data DATASET=name` with the official homes stood in for: the registry entry with
    only its URLs changed (the checksums are the registry's)."""
    spec = datasets.get_spec(name)
    remotes = tuple(dataclasses.replace(remote, url=homes.url_for(remote.url)) for remote in spec.downloads)
    return datasets.fetch(dataclasses.replace(spec, downloads=remotes), progress=False)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The working tree's files (tracked, and new ones git does not ignore) in
    `<tmp>/clone`: nothing beside it, no data/ inside it."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    target = tmp_path / "clone"
    for name in sorted(set(listed.decode().split("\0")) - {""}):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name, follow_symlinks=False)
    return target


def _pytest_in(clone: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m pytest ARGS` in `clone` with its own code, no C3AE_* or pytest variables."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("C3AE_", "PYTEST_"))}
    env.update(PYTHONPATH=str(clone), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=300)


def test_a_clone_without_data_stops_with_one_line(clone: Path) -> None:
    completed = _pytest_in(clone, "tests/test_datasets.py")
    lines = [line for line in (completed.stdout + completed.stderr).splitlines() if line.strip()]
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR, lines[-20:]
    assert len(lines) == 1, lines[:20]
    assert lines[0].startswith("ERROR: The tests need data: no mirror")
    assert str(clone / "data" / "downloads") in lines[0], "the clone's own code and folders"
    assert "Run `make run-all` first" in lines[0] and "make data DATASET=NAME" in lines[0]
    assert "it downloads about 0.9 GB, plus fgnet (size not published)." in lines[0]


def test_a_clone_tests_with_the_archives_it_downloaded(
    clone: Path, official_homes: OfficialHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("C3AE_DATA_MIRROR", "C3AE_HOME", "C3AE_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("C3AE_DATA_DIR", str(clone / "data" / "raw"))
    monkeypatch.setenv("C3AE_DOWNLOAD_DIR", str(clone / "data" / "downloads"))
    for name in SERVED:
        _fetch_from(official_homes, name)
        assert datasets.is_downloaded(name) and datasets.is_complete(name)
    completed = _pytest_in(clone, "tests/test_datasets.py", "-k", WIKI_TESTS)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert "5 passed" in output, output[-3000:]
    assert (f"data: no mirror; the downloads in {clone / 'data' / 'downloads'} stand in for it "
            "(7 mirror files linked in") in output, output[:3000]
    assert "missing: utkface, fgnet, demo" in output


def test_link_mirror_links_only_files_that_are_mirror_files_byte_for_byte(
    official_homes: OfficialHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("C3AE_DATA_MIRROR", raising=False)
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("C3AE_DOWNLOAD_DIR", str(tmp_path / "downloads"))
    assert datasets.link_mirror(tmp_path / "empty") == [] and not datasets.is_downloaded("reference")
    for name in SERVED:
        _fetch_from(official_homes, name)
    view = tmp_path / "view"
    expected = sorted(item.path for name in SERVED for item in datasets.get_spec(name).mirror)
    assert datasets.link_mirror(view) == expected
    for name in SERVED:
        for item in datasets.get_spec(name).mirror:
            assert datasets.file_digest(view / item.path) == item.sha256
    # A changed download (same size, one byte flipped) and a missing one are not linked.
    damaged = tmp_path / "downloads" / "reference" / "timg.jpg"
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (tmp_path / "raw" / "reference" / "timg.jpg").unlink()  # the extracted copy, also a candidate
    (tmp_path / "raw" / "wiki" / "wiki.mat").unlink()
    assert datasets.link_mirror(tmp_path / "view2") == sorted(
        set(expected) - {"reference_c3ae/timg.jpg", "imdb_wiki/wiki.mat"})
