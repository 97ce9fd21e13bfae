"""Face caches check their contents: every file a build writes is recorded (size, SHA-256) and
checked when the cache is loaded and when a build runs again.

One real cache (6 UTKFace photos, chunks of 2) is built once by `c3ae cache build-cache`; each
test damages a copy of it the way a disk, a copy or a hand can (noise, zeros, a cut-off file,
a deleted or edited file), then runs the command the error names, which must repair it, keeping
the chunks that verify. Names that are paths are refused; a full disk (a real 256 KiB tmpfs:
tests/filesystems.py) says so and where, and the build resumes once
there is room.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from filesystems import grow, small_file_system

from c3ae_utils import cli, datasets, faces

IMAGES = 6
CHUNK = 2
NAME = f"utkface-n{IMAGES}"
BUILD = ["cache", "build-cache", "--dataset", "utkface", "--max-images", str(IMAGES), "--chunk-size", str(CHUNK)]
REPAIR = f"`c3ae cache build-cache --dataset utkface --max-images {IMAGES} --chunk-size {CHUNK}`"


@pytest.fixture(scope="module")
def home(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A course home whose UTKFace table is 6 real photos, and their cache built by the command
    line in `home / "built"` (one worker: no Dask cluster to start)."""
    home = tmp_path_factory.mktemp("home")
    table = datasets.load_metadata("utkface")
    table["split"] = datasets.split(table, seed=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("C3AE_ARTIFACTS_DIR", str(home / "artifacts"))
        patch.setenv("C3AE_CACHE_DIR", str(home / "built"))
        datasets.write_metadata_table(datasets.subsample(table, IMAGES, seed=1).reset_index(drop=True), "utkface")
        assert cli.main([*BUILD, "--workers", "1"]) == 0
        yield home


@pytest.fixture
def cache(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the built cache, in this test's own cache folder."""
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(home / "artifacts"))
    monkeypatch.setenv("C3AE_CACHE_DIR", str(tmp_path / "caches"))
    return Path(shutil.copytree(home / "built" / NAME, tmp_path / "caches" / NAME))


def _damage_message(folder: Path) -> str:
    """The one line `load_cache` gives for a damaged cache (asserted to name the repair)."""
    with pytest.raises(ValueError) as raised:
        faces.load_cache(folder.name)
    message = str(raised.value)
    assert "\n" not in message and REPAIR in message, message
    return message


def _repair(message: str) -> None:
    """Run the command the message names (on one worker: no Dask cluster to start)."""
    command = shlex.split(re.search(r"`(c3ae [^`]+)`", message).group(1))
    assert cli.main([*command[1:], "--workers", "1"]) == 0


def _assert_same_cache(folder: Path, built: Path) -> None:
    """The repaired cache loads to what the build made: the same crops, table and failures."""
    ours, theirs = faces.load_cache(folder), faces.load_cache(built)
    assert ours.crops.tobytes() == theirs.crops.tobytes()
    pd.testing.assert_frame_equal(ours.table, theirs.table)
    pd.testing.assert_frame_equal(ours.failures, theirs.failures)


def _stamps(folder: Path, names: list[str]) -> dict[str, int]:
    return {name: (folder / name).stat().st_mtime_ns for name in names}


def _noise(data: bytes) -> bytes:
    """The crop bytes after the `.npy` header replaced by random ones (the same size)."""
    return data[:128] + np.random.default_rng(0).integers(0, 256, len(data) - 128, np.uint8).tobytes()


DAMAGES = {
    "noise": _noise,
    "zeros": lambda data: data[:128] + bytes(len(data) - 128),
    "truncated": lambda data: data[: len(data) // 2],
    "one bit": lambda data: data[:-1] + bytes([data[-1] ^ 1]),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_chunk_is_named_and_rebuilt_alone(cache: Path, home: Path, damage: str) -> None:
    """Before: noise, zeros and a flipped bit loaded silently (and trained); a truncated chunk
    gave `mmap length is greater than file size`; rebuilding kept the chunk (its files existed)."""
    damaged = cache / "chunks" / "chunk-00001.npy"
    damaged.write_bytes(DAMAGES[damage](damaged.read_bytes()))
    message = _damage_message(cache)
    assert f"{damaged} " in message, message
    kept = ["chunks/chunk-00000.npy", "chunks/chunk-00002.npy", "chunks/chunk-00002.parquet"]
    before = _stamps(cache, kept)
    _repair(message)
    _assert_same_cache(cache, home / "built" / NAME)
    assert _stamps(cache, kept) == before, "the chunks that verify are kept as they are"


def test_a_damaged_chunk_table_is_named(cache: Path, home: Path) -> None:
    """Before: a chunk's table was not read by load_cache, and a rebuild merged it as it was."""
    damaged = cache / "chunks" / "chunk-00002.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    message = _damage_message(cache)
    assert f"{damaged} does not match its checksum" in message, message
    _repair(message)
    _assert_same_cache(cache, home / "built" / NAME)


@pytest.mark.parametrize("damage", ["cut short", "flipped byte", "deleted checksums", "emptied config",
                                    "edited config"])
def test_a_damaged_summary_file_is_named_and_repaired(cache: Path, home: Path, damage: str) -> None:
    """Before: a manifest with a flipped byte loaded silently, a cut-short one gave `Parquet
    magic bytes not found in footer` (or `Unexpected end of stream`), an emptied config.json
    `Expecting value`, an edited one a broadcasting error (or wrong crops), none naming the
    fix; a cache without checksums loaded unchecked; rebuilding over an emptied config.json
    said to delete the whole cache."""
    if damage in ("cut short", "flipped byte"):
        damaged = cache / "manifest.parquet"
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data[:-100] if damage == "cut short" else data))
    elif damage == "deleted checksums":
        damaged = cache / "checksums.json"
        damaged.unlink()
    else:
        damaged = cache / "config.json"
        config = json.loads(damaged.read_text())
        config["settings"]["crop_size"] = 32
        damaged.write_text("" if damage == "emptied config" else json.dumps(config, indent=2, sort_keys=True) + "\n")
    message = _damage_message(cache)
    assert f"{damaged} " in message, message
    chunks = sorted(str(path.relative_to(cache)) for path in (cache / "chunks").glob("chunk-*"))
    before = _stamps(cache, chunks)
    _repair(message)
    _assert_same_cache(cache, home / "built" / NAME)
    assert _stamps(cache, chunks) == before, "every chunk verifies: none is redone"


class Stop(Exception):
    """Raised by a progress callback to stop a build, as Ctrl-C would."""


def _stop(index: int) -> None:
    raise Stop(f"stopped after chunk {index}")


def test_a_resumed_build_redoes_a_chunk_damaged_meanwhile(home: Path, tmp_path: Path) -> None:
    """Before: the resumed build counted the damaged chunk as done and finished the cache
    with its zeros ("6 faces cached")."""
    built = home / "built" / NAME
    table = pd.read_parquet(built / "table.parquet")  # the input table the build recorded
    folder = tmp_path / NAME
    with pytest.raises(Stop):
        faces.build_cache(table, folder, workers=1, chunk_size=CHUNK, progress=False, on_chunk_done=_stop)
    first = folder / "chunks" / "chunk-00000.npy"
    first.write_bytes(DAMAGES["zeros"](first.read_bytes()))
    redone: list[int] = []
    faces.build_cache(table, folder, workers=1, chunk_size=CHUNK, progress=False, on_chunk_done=redone.append)
    assert sorted(redone) == [0, 1, 2]
    _assert_same_cache(folder, built)


@pytest.mark.parametrize("name", ["..", ".", "../escaped", "/tmp/c3ae-absolute", "sub/folder", ".hidden"])
def test_cache_names_are_names_never_paths(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture, name: str) -> None:
    """Before: `--name ..` wrote the cache into the parent of the cache folder (and '/...' names
    anywhere); `load_cache("..")` read the folder above."""
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(home / "artifacts"))
    monkeypatch.setenv("C3AE_CACHE_DIR", str(tmp_path / "sandbox" / "caches"))
    assert cli.main([*BUILD, "--workers", "1", "--name", name]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"c3ae cache: error: --name {name}: cache names are plain"), lines
    assert not (tmp_path / "sandbox").exists() and not Path("/tmp/c3ae-absolute").exists()
    if "/" not in name:  # a name with a folder in it is a path to the API (a cache's folder)
        with pytest.raises(ValueError, match="cache names are plain folder names"):
            faces.load_cache(name)


def test_a_full_disk_says_so_and_where_and_the_build_resumes(home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    """Before: `c3ae cache: error: 73856 requested and 40960 written` (NumPy's words, no file)."""
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(home / "artifacts"))
    with small_file_system(tmp_path / "disk", 256) as disk:  # the cache takes about 270 KB
        monkeypatch.setenv("C3AE_CACHE_DIR", str(disk))
        assert cli.main([*BUILD, "--workers", "1"]) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the progress bar
        assert len(errors) == 1 and errors[0].startswith("c3ae cache: error: [Errno 28] no space left on device "
                                                         f"writing {disk / NAME}"), errors
        assert "run the same command again" in errors[0], errors
        grow(disk, 1024)  # room made
        assert cli.main([*BUILD, "--workers", "1"]) == 0
        _assert_same_cache(disk / NAME, home / "built" / NAME)
