"""The datasets of the course: registry, download, extraction, parsers, cleaning and splits.

    python -m c3ae_utils.datasets list                 # the registry
    python -m c3ae_utils.datasets fetch utkface        # download (or copy from the mirror) and extract
    python -m c3ae_utils.datasets check-access wiki    # fail fast when the data cannot be obtained

Every dataset lands in `paths.raw_dir()/<name>/` with the same layout whether it came from
its official home or from the offline mirror (`C3AE_DATA_MIRROR`, laid out like the course's
`shared/data`); a `.complete` marker says the folder is whole. `load_metadata(name)` turns a
dataset into one tidy table (columns in docs/architecture.md); `split`, `loso_folds` and
`subsample` make deterministic partitions of such a table.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from c3ae_utils import paths

logger = logging.getLogger(__name__)

MARKER = ".complete"  # written inside `raw_dir()/<name>/` once the folder is whole
OFFLINE_VARIABLE = "C3AE_OFFLINE"  # "1": never touch the network (mirror or local files only)
MIRROR_VARIABLE = "C3AE_DATA_MIRROR"
USER_AGENT = "c3ae-course/0.1 (+https://github.com/c3ae-course/c3ae-course)"
CHUNK_BYTES = 1 << 20

# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file at a dataset's official (or best-known) home.

    `target` is where a plain (non-archive) file goes inside the dataset folder; archives
    (`.tar`, `.tar.gz`, `.tgz`, `.zip`) are extracted instead. `size` is in bytes; checksums
    are hex digests, None where none is published.
    """

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    target: str | None = None


@dataclass(frozen=True)
class MirrorFile:
    """One file of the offline mirror, relative to `C3AE_DATA_MIRROR` (SHA-256 from its README)."""

    path: str
    sha256: str | None
    size: int | None
    target: str | None = None  # plain files: where they go inside the dataset folder


@dataclass(frozen=True)
class LayoutCheck:
    """`pattern` (a glob inside the dataset folder) must match one of `counts` files."""

    pattern: str
    counts: tuple[int, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the course knows about one dataset: where it lives, its terms, its layout."""

    name: str
    title: str
    homepage: str
    downloads: tuple[RemoteFile, ...]
    mirror: tuple[MirrorFile, ...]
    layout: tuple[LayoutCheck, ...]
    licence: str
    citation: str
    notes: str = ""

    @property
    def download_size(self) -> int | None:
        """Total bytes of the official downloads, None when a size is unknown."""
        sizes = [remote.size for remote in self.downloads]
        return None if any(size is None for size in sizes) else sum(sizes)


_IMDB_WIKI_HOME = "https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/"
_IMDB_WIKI_TERMS = (
    "Academic research purposes only; the copyright of the images belongs to their "
    "original owners. Nothing is redistributed by this course."
)
_IMDB_WIKI_CITATION = (
    "R. Rothe, R. Timofte, L. Van Gool. DEX: Deep EXpectation of apparent age from a single "
    "image. ICCV Workshops 2015; and Deep expectation of real and apparent age from a single "
    "image without facial landmarks. IJCV 126(2-4), 2018."
)
_REFERENCE_RAW = "https://github.com/StevenBanama/C3AE/raw/master"


def _reference_file(folder: str, name: str, size: int, sha256: str) -> tuple[RemoteFile, MirrorFile]:
    remote = RemoteFile(f"{_REFERENCE_RAW}/{folder}/{name}", name, size, sha256, target=name)
    return remote, MirrorFile(f"reference_c3ae/{name}", sha256, size, target=name)


_REFERENCE_FILES = [
    _reference_file("model", "c3ae_imdb_v89.h5", 773_112,
                    "f5c2fb97285e4394165aa13be56d0877fb5cb3a5fd5178d5be842b19476f7996"),
    _reference_file("model", "imdb_focal_loss_c3ae_v84.h5", 659_496,
                    "98f3ae534bd8b7b0c992fa2a04077a4c5a6ff4754817e2af7e9954dd6ffc1f9d"),
    _reference_file("assets", "timg.jpg", 92_507,
                    "790f5b7534065da0be8ba1a23308d7d4da5b51b4d76dbbe4f4a85483a42a9228"),
    _reference_file("assets", "pattern5.jpg", 164_043,
                    "fd42abe111691aa6f3785ebbe9ef5f013f7d8f65307751f84d8b0cb33df0afcd"),
    _reference_file("assets", "example1.jpg", 147_544,
                    "a8342c9d955265f45dca40879c074cd37b65aa1c253efc5a946ab93cc8a08639"),
    _reference_file("assets", "example2.jpg", 218_945,
                    "f9de0c6960355d31db56719617073fabc7e67a90fe5df55034d604f9f7ce1b1f"),
]

# (source repository, commit, path in the repository, size, SHA-256) of the demo files.
_DEMO_SOURCES = [
    ("ageitgey/face_recognition", "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1",
     "examples/two_people.jpg", 487_722,
     "536b29cd513fb618e4d5aa79d51a279948daa804ce359463449cce5f9dc68aa7"),
    ("ageitgey/face_recognition", "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1",
     "examples/knn_examples/test/obama_and_biden.jpg", 559_466,
     "b8781c1f734616a942ce67626e104151f7d891bc7064ae8a3db175f064357a1a"),
    ("ageitgey/face_recognition", "2e2dccea9dd0ce730c8d464d0f67c6eebb40c9d1",
     "examples/short_hamilton_clip.mp4", 613_928,
     "0b5ff4c55a4cd69f79956f312681730881fe1e2a9e6146e75c31636dffcc7e28"),
    ("timesler/facenet-pytorch", "787da06156087cd6b616fe6608213722bddc30cd",
     "data/multiface.jpg", 300_852,
     "433a04ac20456b02284f66f8336a4267be86a99ed3635141a477e192312b4f2f"),
    ("timesler/facenet-pytorch", "787da06156087cd6b616fe6608213722bddc30cd",
     "examples/video.mp4", 2_411_585,
     "d4c0b7a4e385e11ee3cfe7fbdfd0d01d319e16944441bba747a897eed33d115f"),
    ("serengil/deepface", "243209fd7b46ecdecf72665cc25219f6e8181f25",
     "tests/unit/dataset/selfie-many-people.jpg", 71_506,
     "c5c306582edaea1fd61d328f8822e0421af6547deb7a36903ba5f9169cb62034"),
    ("serengil/deepface", "243209fd7b46ecdecf72665cc25219f6e8181f25",
     "tests/unit/dataset/couple.jpg", 944_694,
     "18654b7e11a237846ee6b7d641206503fa90e8b3ad6a949ecb02835ea9a561eb"),
]


def _demo_files() -> tuple[tuple[RemoteFile, ...], tuple[MirrorFile, ...]]:
    remotes, mirrors = [], []
    for repository, commit, source_path, size, sha256 in _DEMO_SOURCES:
        target = f"{repository.replace('/', '_')}/{PurePosixPath(source_path).name}"
        url = f"https://github.com/{repository}/raw/{commit}/{source_path}"
        remotes.append(RemoteFile(url, target.replace("/", "__"), size, sha256, target=target))
        mirrors.append(MirrorFile(f"demo/{target}", sha256, size, target=target))
    return tuple(remotes), tuple(mirrors)


_DEMO_REMOTES, _DEMO_MIRROR = _demo_files()

REGISTRY: dict[str, DatasetSpec] = {
    "utkface": DatasetSpec(
        name="utkface",
        title="UTKFace, aligned & cropped faces (200x200)",
        homepage="https://susanqq.github.io/UTKFace/",
        downloads=(
            RemoteFile(
                # The home page's Google Drive file returns 404 since 2026-09; this Hugging Face
                # copy, pinned to a commit, is the same aligned & cropped release.
                "https://huggingface.co/datasets/py97/UTKFace-Cropped/resolve/"
                "e80f21fb21fa3631380c3cb634b79be3ac2f4cba/UTKFace.tar.gz",
                "UTKFace.tar.gz",
                size=106_634_631,
                sha256="2c0655397b498e81b82d685ee74bee8c2e4364a5897caf3afec6ea48929024a7",
            ),
        ),
        mirror=(
            MirrorFile("utkface/UTKFace_part1of2.tar.gz",
                       "16e2ac24f0d8053e554103b39e3775a498cae018f946d7d1df90ce9974179bcf", 48_249_814),
            MirrorFile("utkface/UTKFace_part2of2.tar.gz",
                       "9b0b3852ad3f866d271e9a8192c609e1bbf1e643253b3a8e73cd3e53afb019b5", 50_851_796),
        ),
        # 22,207 in the course mirror (1,501 files held back), 23,708 in the official release.
        layout=(LayoutCheck("UTKFace/*.jpg", (22_207, 23_708)),),
        licence="Non-commercial research purposes only; the copyright of the images belongs "
        "to their original owners. Nothing is redistributed by this course.",
        citation="Z. Zhang, Y. Song, H. Qi. Age Progression/Regression by Conditional "
        "Adversarial Autoencoder. CVPR 2017.",
        notes="Labels in file names: [age]_[gender 0 male, 1 female]_[race]_[date&time].jpg.chip.jpg.",
    ),
    "fgnet": DatasetSpec(
        name="fgnet",
        title="FG-NET Aging Database (1,002 photos of 82 people)",
        homepage="https://yanweifu.github.io/FG_NET_data/",
        downloads=(
            RemoteFile("http://yanweifu.github.io/FG_NET_data/FGNET.zip", "FGNET.zip",
                       md5="1206978cac3626321b84c22b24cc8d19"),
        ),
        mirror=(
            MirrorFile("fgnet/FGNET.tar",
                       "8aee902353ae5a8ecc311601b0ae3623a9f3b4d6a7ed90f953cea215c04203ac", 48_721_920),
        ),
        layout=(LayoutCheck("FGNET/images/*.[jJ][pP][gG]", (1_002,)),),
        licence="Distributed for academic research; no formal licence text accompanies it. "
        "Nothing is redistributed by this course.",
        citation="A. Lanitis, C. J. Taylor, T. F. Cootes. Toward automatic simulation of aging "
        "effects on face images. IEEE TPAMI 24(4), 2002.",
        notes="Labels in file names: NNNAxx[a|b].JPG = subject NNN at age xx.",
    ),
    "wiki": DatasetSpec(
        name="wiki",
        title="IMDB-WIKI, Wikipedia part (62,328 faces + wiki.mat)",
        homepage=_IMDB_WIKI_HOME,
        downloads=(
            RemoteFile(_IMDB_WIKI_HOME + "static/wiki_crop.tar", "wiki_crop.tar"),
        ),
        mirror=(
            MirrorFile("imdb_wiki/wiki.mat",
                       "bd6adc5eb6a31c15d36d93a1a9c63940f27b62ca51b9028606b3a57d6a33993c",
                       3_800_373, target="wiki.mat"),
        ),
        layout=(LayoutCheck("wiki.mat", (1,)),),
        licence=_IMDB_WIKI_TERMS,
        citation=_IMDB_WIKI_CITATION,
        notes="About 0.8 GB; no checksum is published, so the size and SHA-256 are recorded "
        "in wiki_crop.tar.json after the first download. The mirror holds wiki.mat only.",
    ),
    "imdb": DatasetSpec(
        name="imdb",
        title="IMDB-WIKI, IMDb part (460,723 faces + imdb.mat)",
        homepage=_IMDB_WIKI_HOME,
        downloads=(
            RemoteFile(_IMDB_WIKI_HOME + "static/imdb_crop.tar", "imdb_crop.tar"),
        ),
        # Not in the course mirror; a mirror that has it is used (no published checksum).
        mirror=(MirrorFile("imdb_wiki/imdb.mat", None, None, target="imdb.mat"),),
        layout=(LayoutCheck("imdb.mat", (1,)),),
        licence=_IMDB_WIKI_TERMS,
        citation=_IMDB_WIKI_CITATION,
        notes="About 7 GB; no checksum is published, so the size and SHA-256 are recorded "
        "in imdb_crop.tar.json after the first download.",
    ),
    "reference": DatasetSpec(
        name="reference",
        title="C3AE reference implementation: two pretrained Keras .h5 models and 4 pictures",
        homepage="https://github.com/StevenBanama/C3AE",
        downloads=tuple(remote for remote, _ in _REFERENCE_FILES),
        mirror=tuple(mirror for _, mirror in _REFERENCE_FILES),
        layout=(LayoutCheck("*.h5", (2,)), LayoutCheck("*.jpg", (4,))),
        licence="BSD-2-Clause (c) 2019 StevenBanama; the models were trained on IMDB-WIKI, whose "
        "academic-research-only terms apply to them too.",
        citation="C. Zhang, S. Liu, X. Xu, C. Zhu. C3AE: Exploring the Limits of Compact Model "
        "for Age Estimation. CVPR 2019 (models: github.com/StevenBanama/C3AE, commit 9cfd0cb).",
    ),
    "demo": DatasetSpec(
        name="demo",
        title="Multi-face photos and two short videos for the inference demo",
        homepage="https://github.com/ageitgey/face_recognition",
        downloads=_DEMO_REMOTES,
        mirror=_DEMO_MIRROR,
        layout=(LayoutCheck("*/*.jpg", (5,)), LayoutCheck("*/*.mp4", (2,))),
        licence="Test fixtures of MIT-licensed repositories (ageitgey/face_recognition, "
        "timesler/facenet-pytorch, serengil/deepface); the photos' copyright stays with their "
        "owners: teaching and testing only.",
        citation="Files pinned to the commits named in their URLs.",
    ),
}

LABELLED = ("utkface", "fgnet", "wiki", "imdb")  # datasets with a metadata table


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of `name`; ValueError listing the known names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}.")
    return REGISTRY[name]


# --------------------------------------------------------------------------------------------
# Checksums and download
# --------------------------------------------------------------------------------------------


class DownloadError(OSError):
    """A transfer failed; a partial `.part` file, if any, is kept so the next try resumes.

    `status` is the HTTP status code when the server answered with an error, else None;
    `retry` says whether trying again may help (not for client errors or an unreachable host).
    """

    def __init__(self, message: str, status: int | None = None, retry: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file (`algorithm` is any `hashlib` name: "sha256", "md5")."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: Path, *, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise ValueError (giving both hashes) if `path` does not have the expected digest."""
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        actual = file_digest(path, algorithm)
        if actual != expected.lower():
            raise ValueError(
                f"Checksum mismatch for {path.name}: expected {algorithm} {expected}, got {actual}."
            )


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".json")


def _write_record(target: Path, url: str) -> dict[str, object]:
    """Record size and hashes of a file whose source publishes no checksum (JSON beside it)."""
    record = {
        "url": url,
        "size": target.stat().st_size,
        "sha256": file_digest(target, "sha256"),
        "md5": file_digest(target, "md5"),
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "note": "no checksum is published for this file; recorded after the first download",
    }
    _record_path(target).write_text(json.dumps(record, indent=2) + "\n")
    return record


def _expected_digests(target: Path, sha256: str | None, md5: str | None) -> tuple[str | None, str | None]:
    """Published digests, or those recorded after an earlier download of an unpublished file."""
    if sha256 is None and md5 is None and _record_path(target).exists():
        record = json.loads(_record_path(target).read_text())
        return record.get("sha256"), None
    return sha256, md5


def _open_url(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of `url` to `part` (HTTP Range when `part` already holds bytes)."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open_url(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the part already holds every byte
            return
        raise DownloadError(f"Download of {url} failed: HTTP {error.code} {error.reason}.",
                            status=error.code, retry=error.code >= 500) from error
    except (urllib.error.URLError, OSError) as error:  # no network, refused, timed out
        reason = getattr(error, "reason", error)
        raise DownloadError(f"Cannot reach {url} ({reason}).", retry=False) from error
    with response:
        if offset and response.status != 206:  # the server ignored Range: start again
            logger.info("%s does not support resuming; downloading from the start", url)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        mode = "ab" if offset else "wb"
        with open(part, mode) as stream, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress,
        ) as bar:
            try:
                for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                    stream.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (http.client.IncompleteRead, OSError) as error:
                raise DownloadError(
                    f"Download of {url} was interrupted after {received:,} bytes ({error!r}); "
                    f"the partial file {part} is kept: run again to resume."
                ) from error
    if total is not None and received < total:
        raise DownloadError(
            f"Download of {url} ended after {received:,} of {total:,} bytes; "
            f"the partial file {part} is kept: run again to resume."
        )


def download(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `target` with a progress bar, resuming, then checking its checksum.

    Bytes go to `<target>.part` (resumed with an HTTP Range request after an interruption,
    up to `retries` times); only a file with the expected size and digest is renamed to
    `target`. A checksum mismatch removes the partial file and raises ValueError giving both
    hashes. Without a published checksum, size and hashes are recorded in `<target>.json`
    and later downloads are checked against them. An existing valid `target` is returned as is.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sha256, md5 = _expected_digests(target, sha256, md5)
    if target.exists():
        try:
            verify_checksum(target, sha256=sha256, md5=md5)
        except ValueError as error:
            raise ValueError(f"{error} {target} is damaged: delete it and run again.") from None
        return target
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout, progress)
            break
        except DownloadError as error:
            if attempt == retries or not error.retry:
                raise
            logger.warning("%s Retrying (%d/%d).", error, attempt + 1, retries)
            time.sleep(min(2.0**attempt, 10.0))
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise ValueError(
            f"Size mismatch for {target.name} from {url}: expected {size:,} bytes, got "
            f"{actual_size:,}; the partial file was removed, run again to download it afresh."
        )
    try:
        verify_checksum(part, sha256=sha256, md5=md5)
    except ValueError as error:
        part.unlink()
        raise ValueError(
            f"{error} Downloaded from {url}; the partial file was removed, run again to "
            "download it afresh (or check that the URL still serves the same file)."
        ) from None
    os.replace(part, target)
    if sha256 is None and md5 is None:
        record = _write_record(target, url)
        logger.info("No published checksum for %s: recorded size %s and sha256 %s in %s",
                    target.name, record["size"], record["sha256"], _record_path(target).name)
    return target


# --------------------------------------------------------------------------------------------
# Safe, atomic extraction
# --------------------------------------------------------------------------------------------

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(filename: str) -> bool:
    """True for the archive types `extract_archive` understands."""
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


def _check_member_name(name: str, archive: Path) -> None:
    """Refuse absolute member names and names climbing out with `..`."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in posix.parts:
        raise ValueError(
            f"Refusing to extract {archive.name}: member {name!r} has an absolute path or '..'. "
            "The archive is unsafe or corrupt; delete it and fetch it again from its official URL."
        )


def _safe_tar_members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        _check_member_name(member.name, archive)
        if member.issym() or member.islnk():
            # A link target is relative to the link's folder (symlink) or to the root (hard link).
            base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
            _check_member_name(str(base / member.linkname), archive)
        elif not (member.isfile() or member.isdir()):
            logger.warning("Skipping special member %r of %s", member.name, archive.name)
            continue
        yield member


def extract_archive(archive: Path, destination: Path) -> None:
    """Extract a `.tar`, `.tar.gz`/`.tgz` or `.zip` into `destination` (created if needed).

    Members with absolute paths, `..`, or links pointing outside are refused (ValueError);
    a truncated or corrupt archive raises ValueError. Callers extract into a temporary
    folder (see `fetch`), so a failure leaves nothing under the final name.
    """
    archive = Path(archive)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for name in bundle.namelist():
                    _check_member_name(name, archive)
                bundle.extractall(destination)
        else:
            with tarfile.open(archive, "r:*") as tar:
                members = _safe_tar_members(tar, archive)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                    tar.extractall(destination, members=members, filter="data")
                else:  # pragma: no cover - older Pythons
                    tar.extractall(destination, members=members)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError) and not archive.exists():
            raise
        raise ValueError(
            f"Archive {archive} is truncated or corrupt ({error}). Delete it and fetch it "
            "again (python -m c3ae_utils.datasets fetch NAME)."
        ) from error
    except Exception as error:  # zlib.error and friends from a damaged gzip stream
        if isinstance(error, ValueError):
            raise
        raise ValueError(f"Archive {archive} is truncated or corrupt ({error!r}).") from error


def _layout_problems(spec: DatasetSpec, folder: Path) -> list[str]:
    """What is missing from an extracted dataset folder (empty list: complete)."""
    problems = []
    for check in spec.layout:
        found = len(list(folder.glob(check.pattern)))
        if found not in check.counts:
            expected = " or ".join(f"{count:,}" for count in check.counts)
            problems.append(f"{check.pattern}: {found:,} files, expected {expected}")
    return problems


def _find_dir(root: Path, accept: Callable[[Path], bool]) -> Path | None:
    for folder in sorted(path for path in root.rglob("*") if path.is_dir()):
        if accept(folder):
            return folder
    return None


def _normalise_layout(name: str, folder: Path) -> None:
    """Move an official archive's folders to the course layout (docs/architecture.md)."""
    if name == "utkface" and not (folder / "UTKFace").is_dir():
        found = _find_dir(folder, lambda d: any(d.glob("*.chip.jpg")))
        if found is not None:
            found.rename(folder / "UTKFace")
    elif name == "fgnet" and not (folder / "FGNET" / "images").is_dir():
        found = _find_dir(folder, lambda d: d.name.lower() == "images" and any(d.glob("*.[jJ][pP][gG]")))
        if found is not None:
            (folder / "FGNET").mkdir(exist_ok=True)
            for sibling in found.parent.iterdir():  # images/, points/, ... move together
                if sibling.resolve() != (folder / "FGNET").resolve():
                    sibling.rename(folder / "FGNET" / sibling.name)
    elif name in {"wiki", "imdb"}:
        inside = folder / f"{name}_crop" / f"{name}.mat"  # the official tar keeps it with the images
        if inside.exists() and not (folder / f"{name}.mat").exists():
            inside.rename(folder / f"{name}.mat")


def _replace_dir(new: Path, target: Path) -> None:
    """Put the finished folder `new` at `target`, replacing an incomplete one."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(target)


def _write_marker(folder: Path, source: str) -> None:
    info = {
        "source": source,
        "completed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (folder / MARKER).write_text(json.dumps(info) + "\n")


# --------------------------------------------------------------------------------------------
# Fetch
# --------------------------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() in {"1", "true", "yes"}


def _mirror_sources(spec: DatasetSpec) -> list[tuple[MirrorFile, Path]] | None:
    """The mirror's files of `spec` when a mirror is set and holds all of them, else None."""
    mirror = paths.mirror_dir()
    if mirror is None:
        return None
    found = [(item, mirror / item.path) for item in spec.mirror]
    missing = [str(path) for _, path in found if not path.is_file()]
    if missing:
        logger.info("The mirror %s lacks %s; using the official source", mirror, ", ".join(missing))
        return None
    return found


def _populate_from_mirror(spec: DatasetSpec, sources: list[tuple[MirrorFile, Path]], folder: Path) -> None:
    for item, path in sources:
        if item.size is not None and path.stat().st_size != item.size:
            raise ValueError(
                f"Mirror file {path} has {path.stat().st_size:,} bytes, expected {item.size:,}: "
                f"the mirror is damaged. Replace it or unset {MIRROR_VARIABLE}."
            )
        if item.sha256 is None:
            logger.warning("No checksum known for mirror file %s; using it unverified", path)
        else:
            try:
                verify_checksum(path, sha256=item.sha256)
            except ValueError as error:
                raise ValueError(f"{error} The mirror file {path} is damaged: replace it or "
                                 f"unset {MIRROR_VARIABLE} to download from the official URL.") from None
        _place(path, item.target, folder)


def _place(source: Path, target: str | None, folder: Path) -> None:
    """Extract an archive into `folder`, or copy a plain file to `folder/target`."""
    if is_archive(source.name) and target is None:
        extract_archive(source, folder)
    else:
        destination = folder / (target or source.name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)


def _unavailable_message(spec: DatasetSpec, reason: str) -> str:
    urls = ", ".join(remote.url for remote in spec.downloads)
    return (
        f"Dataset {spec.name!r} is not available: it is not extracted in "
        f"{paths.raw_dir() / spec.name}, no offline mirror holds it ({MIRROR_VARIABLE}="
        f"{os.environ.get(MIRROR_VARIABLE, '<unset>')}), and the official source {urls} could "
        f"not be used ({reason}). Either set {MIRROR_VARIABLE} to a folder laid out like the "
        f"course's shared/data, or download {urls} by hand into "
        f"{paths.download_dir() / spec.name}/ and run `python -m c3ae_utils.datasets fetch "
        f"{spec.name}` again."
    )


def _populate_from_downloads(spec: DatasetSpec, folder: Path, progress: bool) -> None:
    downloads = paths.ensure_dir(paths.download_dir() / spec.name)
    for remote in spec.downloads:
        local = downloads / remote.filename
        if not local.exists() and _offline():
            raise FileNotFoundError(_unavailable_message(spec, f"{OFFLINE_VARIABLE} is set"))
        try:
            download(remote.url, local, sha256=remote.sha256, md5=remote.md5, size=remote.size,
                     progress=progress)
        except DownloadError as error:
            raise FileNotFoundError(_unavailable_message(spec, str(error))) from error
        _place(local, remote.target, folder)


def is_complete(name: str) -> bool:
    """True when `raw_dir()/name` carries the `.complete` marker."""
    return (paths.raw_dir() / name / MARKER).exists()


def fetch(name: str | DatasetSpec, *, progress: bool = True) -> Path:
    """Make `raw_dir()/name` hold the dataset in the course layout and return that folder.

    Uses the offline mirror (`C3AE_DATA_MIRROR`) when it holds the dataset, else downloads
    the official files into `download_dir()/name/`. Idempotent: a folder with the `.complete`
    marker is returned at once; a folder extracted by hand with the right file counts gets
    the marker. Extraction happens in a temporary sibling folder that is renamed into place
    only when complete. `name` may also be a `DatasetSpec` (e.g. a registry entry with
    another URL, via `dataclasses.replace`).
    """
    spec = name if isinstance(name, DatasetSpec) else get_spec(name)
    name = spec.name
    target = paths.raw_dir() / name
    if (target / MARKER).exists():
        return target
    if target.is_dir() and not _layout_problems(spec, target):
        logger.info("%s is already extracted; marking it complete", target)
        _write_marker(target, "found already extracted")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{name}.partial-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        sources = _mirror_sources(spec)
        if sources is not None:
            logger.info("Copying %s from the mirror %s", name, paths.mirror_dir())
            _populate_from_mirror(spec, sources, temporary)
            source = f"mirror {paths.mirror_dir()}"
        else:
            _populate_from_downloads(spec, temporary, progress)
            source = ", ".join(remote.url for remote in spec.downloads)
        _normalise_layout(name, temporary)
        problems = _layout_problems(spec, temporary)
        if problems:
            raise ValueError(
                f"{name} was extracted from {source} but its layout is unexpected: "
                f"{'; '.join(problems)}. Delete the downloaded files and fetch again."
            )
        _write_marker(temporary, source)
        if (target / MARKER).exists():  # another process finished first
            shutil.rmtree(temporary)
        else:
            _replace_dir(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target


def check_access(name_or_spec: str | DatasetSpec, timeout: float = 5.0) -> tuple[bool, str]:
    """Can `fetch` obtain the dataset? Returns (ok, message) within about `timeout` seconds.

    True when it is already extracted, when the mirror holds it, when its downloads are
    already on disk, or when the first byte of each official URL can be read.
    """
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    if (paths.raw_dir() / spec.name / MARKER).exists():
        return True, f"{spec.name}: already extracted in {paths.raw_dir() / spec.name}"
    if _mirror_sources(spec) is not None:
        return True, f"{spec.name}: available in the mirror {paths.mirror_dir()}"
    downloads = paths.download_dir() / spec.name
    if all((downloads / remote.filename).exists() for remote in spec.downloads):
        return True, f"{spec.name}: already downloaded in {downloads}"
    if _offline():
        return False, _unavailable_message(spec, f"{OFFLINE_VARIABLE} is set")
    for remote in spec.downloads:
        request = urllib.request.Request(remote.url, headers={"User-Agent": USER_AGENT,
                                                              "Range": "bytes=0-0"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read(1)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            return False, _unavailable_message(spec, f"{remote.url}: {reason}")
    return True, f"{spec.name}: the official source is reachable"


# --------------------------------------------------------------------------------------------
# Parsers
# --------------------------------------------------------------------------------------------

UTKFACE_RACES = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "others"}
# [age]_[gender]_[race]_[date&time].jpg.chip.jpg; race may be missing, and the release has a
# name with a space before ".jpg" and one without the dot.
_UTKFACE_NAME = re.compile(r"^(?P<age>\d+)_(?P<gender>[01])_(?:(?P<race>[0-4])_)?(?P<date>\d+)\s*\.?jpg\.chip\.jpg$")
_FGNET_NAME = re.compile(r"^(?P<subject>\d{3})A(?P<age>\d{2})(?P<twin>[ab]?)\.jpg$", re.IGNORECASE)
STRING = pd.StringDtype()  # strings with pd.NA for missing values


def _tidy(columns: dict[str, object]) -> pd.DataFrame:
    """The common columns with their dtypes (path, age, gender, subject, dataset first)."""
    table = pd.DataFrame(columns)
    for column in ("path", "gender", "subject", "dataset", "race", "name"):
        if column in table:
            table[column] = table[column].astype(STRING)
    table["age"] = table["age"].astype("int64")
    return table


def parse_utkface(folder: Path) -> pd.DataFrame:
    """One row per UTKFace image in `folder` (the `UTKFace/` directory), sorted by file name.

    Columns: path, age (years), gender (0 = male, 1 = female in the names), subject (<NA>),
    dataset, race (white, black, asian, indian, others; <NA> when the name lacks it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; run datasets.fetch('utkface').")
    rows, skipped = [], []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        match = _UTKFACE_NAME.match(entry.name)
        if match is None:
            skipped.append(entry.name)
            continue
        race = match["race"]
        rows.append((entry.path, int(match["age"]), "male" if match["gender"] == "0" else "female",
                     UTKFACE_RACES[int(race)] if race is not None else None))
    if skipped:
        logger.warning("Skipped %d UTKFace files with unreadable names, e.g. %s", len(skipped), skipped[:3])
    if not rows:
        raise ValueError(f"No UTKFace images found in {folder}.")
    path, age, gender, race = zip(*rows, strict=True)
    return _tidy({"path": path, "age": age, "gender": gender, "subject": [None] * len(rows),
                  "dataset": "utkface", "race": race})


def parse_fgnet(folder: Path) -> pd.DataFrame:
    """One row per FG-NET photo in `folder` (the `FGNET/` directory), sorted by file name.

    Columns: path, age (years), gender (<NA>: not in the names), subject ("001".."082"),
    dataset, points_path (the 68-point landmark file, <NA> if absent).
    """
    folder = Path(folder)
    images = folder / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{images} does not exist; run datasets.fetch('fgnet').")
    rows = []
    for entry in sorted(os.scandir(images), key=lambda entry: entry.name):
        match = _FGNET_NAME.match(entry.name)
        if match is None:
            logger.warning("Skipping FG-NET file with an unexpected name: %s", entry.name)
            continue
        points = folder / "points" / (Path(entry.name).stem.lower() + ".pts")
        rows.append((entry.path, int(match["age"]), match["subject"],
                     str(points) if points.exists() else None))
    if not rows:
        raise ValueError(f"No FG-NET images found in {images}.")
    path, age, subject, points_path = zip(*rows, strict=True)
    table = _tidy({"path": path, "age": age, "gender": [None] * len(rows), "subject": subject,
                   "dataset": "fgnet"})
    table["points_path"] = pd.array(points_path, dtype=STRING)
    return table


_MAT_FIELDS = ("dob", "photo_taken", "full_path", "gender", "face_score", "second_face_score")
_DATENUM_UNIX_EPOCH = 719_529  # MATLAB datenum of 1970-01-01 (datenum 1 = 1 January of year 0)


def datenum_to_date(datenum: np.ndarray) -> np.ndarray:
    """MATLAB serial day numbers (int) -> `datetime64[D]` (proleptic Gregorian calendar)."""
    return np.datetime64("1970-01-01", "D") + (np.asarray(datenum, dtype=np.int64) - _DATENUM_UNIX_EPOCH)


def age_at_mid_year(birth: np.ndarray, year_taken: np.ndarray) -> np.ndarray:
    """Completed years on 1 July of `year_taken` for `datetime64[D]` birth dates (int64).

    IMDB-WIKI only knows the year a photo was taken; the usual convention assumes the middle
    of the year. Someone born on 1 July has their birthday that day; born 2 July or later,
    they are one year younger than `year_taken - birth year`.
    """
    birth = np.asarray(birth, dtype="datetime64[D]")
    birth_year = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    month = (birth.astype("datetime64[M]") - birth.astype("datetime64[Y]")).astype(np.int64) + 1
    day = (birth - birth.astype("datetime64[M]")).astype(np.int64) + 1
    after_july_first = (month > 7) | ((month == 7) & (day > 1))
    return np.asarray(year_taken, dtype=np.int64) - birth_year - after_july_first.astype(np.int64)


def _mat_strings(field: np.ndarray) -> list[str | None]:
    """A MATLAB cell array of strings (object array of 1-element arrays) -> list of str."""
    values = []
    for cell in field.ravel():
        flat = np.asarray(cell).ravel()
        values.append(str(flat[0]) if flat.size else None)
    return values


def read_imdb_wiki_mat(path: Path, name: str, image_root: Path | None = None) -> pd.DataFrame:
    """Every entry of an IMDB-WIKI `.mat` (`name` = "wiki" or "imdb") as a raw table.

    Columns: path (`image_root / full_path`), age (completed years on 1 July of photo_taken,
    see `age_at_mid_year`; raw, so noisy), gender ("male" for 1, "female" for 0, <NA> for
    NaN), subject (IMDB `celeb_id`; <NA> for WIKI), dataset, entry (position in the .mat),
    name, photo_taken (year), dob (birth date), face_score (-inf: no face found),
    second_face_score (NaN: no second face), face_x1, face_y1, face_x2, face_y2 (pixels),
    image_available (the JPEG exists on disk). A `.mat` of another dataset or of something
    else raises ValueError.
    """
    from scipy.io import loadmat

    path = Path(path)
    if name not in {"wiki", "imdb"}:
        raise ValueError(f"IMDB-WIKI metadata is 'wiki' or 'imdb', got {name!r}.")
    try:
        contents = loadmat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; run datasets.fetch({name!r}).") from None
    except Exception as error:  # scipy raises several types for files that are not .mat
        raise ValueError(f"{path} is not a readable MATLAB .mat file ({error}).") from error
    variables = sorted(key for key in contents if not key.startswith("__"))
    if name not in contents:
        other = [key for key in variables if key in {"wiki", "imdb"}]
        what = f"the {other[0]!r} metadata" if other else f"the variables {variables}"
        raise ValueError(f"{path} holds {what}, not {name!r}: pass the {name}.mat of IMDB-WIKI.")
    record = contents[name]
    fields = record.dtype.names or ()
    missing = [field for field in _MAT_FIELDS if field not in fields]
    if missing:
        raise ValueError(f"{path}: struct {name!r} lacks the IMDB-WIKI fields {missing}.")
    record = record[0, 0]
    dob = np.asarray(record["dob"], dtype=np.float64).ravel()
    taken = np.asarray(record["photo_taken"], dtype=np.int64).ravel()
    birth = datenum_to_date(np.floor(dob).astype(np.int64))
    root = Path(image_root) if image_root is not None else path.parent / f"{name}_crop"
    full_paths = _mat_strings(record["full_path"])
    image_paths = [str(root / relative) for relative in full_paths]
    gender_code = np.asarray(record["gender"], dtype=np.float64).ravel()
    gender = np.where(gender_code == 1, "male", np.where(gender_code == 0, "female", None))
    if name == "imdb" and "celeb_id" in fields:
        subject = [str(int(value)) for value in np.asarray(record["celeb_id"]).ravel()]
    else:
        subject = [None] * len(full_paths)
    table = _tidy({
        "path": image_paths,
        "age": age_at_mid_year(birth, taken),
        "gender": gender,
        "subject": subject,
        "dataset": name,
    })
    table["entry"] = np.arange(len(table))
    table["name"] = pd.array(_mat_strings(record["name"]) if "name" in fields else [None] * len(table),
                             dtype=STRING)
    table["photo_taken"] = taken
    table["dob"] = birth.astype("datetime64[s]")
    table["face_score"] = np.asarray(record["face_score"], dtype=np.float64).ravel()
    table["second_face_score"] = np.asarray(record["second_face_score"], dtype=np.float64).ravel()
    boxes = _face_boxes(record["face_location"], len(table)) if "face_location" in fields else None
    for axis, column in enumerate(("face_x1", "face_y1", "face_x2", "face_y2")):
        table[column] = boxes[:, axis] if boxes is not None else np.nan
    table["image_available"] = _images_exist(root, image_paths)
    return table


def _face_boxes(field: np.ndarray, count: int) -> np.ndarray:
    """MATLAB cells of [x1 y1 x2 y2] -> float64 [count, 4] (NaN where a cell is malformed)."""
    boxes = np.full((count, 4), np.nan)
    for row, cell in enumerate(field.ravel()):
        values = np.asarray(cell, dtype=np.float64).ravel()
        if values.size == 4:
            boxes[row] = values
    return boxes


def _images_exist(root: Path, image_paths: list[str]) -> np.ndarray:
    if not root.is_dir():  # metadata without the pictures (as in the mirror): skip 62k stat calls
        return np.zeros(len(image_paths), dtype=bool)
    return np.fromiter((os.path.exists(path) for path in image_paths), dtype=bool, count=len(image_paths))


# The standard IMDB-WIKI clean-up, in the order the cleaning report counts it.
CLEANING_STEPS: tuple[tuple[str, Callable[[pd.DataFrame], pd.Series]], ...] = (
    ("no face found (face_score = -inf)", lambda table: pd.Series(np.isneginf(table["face_score"]), index=table.index)),
    ("second face (second_face_score not NaN)", lambda table: table["second_face_score"].notna()),
    ("face score below 1", lambda table: table["face_score"] < 1),
    ("age outside 0-100", lambda table: ~table["age"].between(0, 100)),
    ("unknown gender", lambda table: table["gender"].isna()),
)


def _cleaning_masks(table: pd.DataFrame) -> Iterator[tuple[str, pd.Series]]:
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
        if name_or_table not in {"wiki", "imdb"}:
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


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------

SPLITS = ("train", "val", "test")


def age_decade(ages: pd.Series | np.ndarray, last: int = 9) -> np.ndarray:
    """Decade index of each age (0 for 0-9, 1 for 10-19, ...), ages of `last`0+ pooled."""
    return np.minimum(np.asarray(ages, dtype=np.int64) // 10, last).clip(min=0)


def _stable_order(table: pd.DataFrame) -> np.ndarray:
    """Row positions sorted by path (or index), so results do not depend on row order."""
    key = table["path"].astype(str).to_numpy() if "path" in table else np.asarray(table.index)
    return np.argsort(key, kind="stable")


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) "
            "and sum to less than 1."
        )


def _has_subjects(table: pd.DataFrame) -> bool:
    return "subject" in table and bool(table["subject"].notna().any())


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
    labels = np.full(len(table), "train", dtype=object)
    rng = np.random.default_rng(seed)
    if _has_subjects(table):
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
        labels = keys.map(assigned).to_numpy(dtype=object)
    else:
        order = _stable_order(table)
        decades = age_decade(table["age"])
        for decade in np.unique(decades):
            members = order[decades[order] == decade]
            members = members[rng.permutation(len(members))]
            num_test = int(round(test_fraction * len(members)))
            num_val = int(round(val_fraction * len(members)))
            labels[members[:num_test]] = "test"
            labels[members[num_test:num_test + num_val]] = "val"
    return pd.Series(pd.array(labels, dtype=STRING), index=table.index, name="split")


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
    groups = table["split"].astype(str).to_numpy() if "split" in table else np.full(len(table), "all")
    decades = age_decade(table["age"])
    chosen: list[np.ndarray] = []
    group_sizes = pd.Series(groups).value_counts().sort_index()
    for group, group_count in _largest_remainder(group_sizes, n).items():
        in_group = order[groups[order] == group]
        decade_sizes = pd.Series(decades[in_group]).value_counts().sort_index()
        for decade, count in _largest_remainder(decade_sizes, int(group_count)).items():
            members = in_group[decades[in_group] == decade]
            chosen.append(members[rng.permutation(len(members))[:count]])
    positions = np.sort(np.concatenate(chosen))
    return table.iloc[positions].copy()


# --------------------------------------------------------------------------------------------
# Summaries and the saved tables
# --------------------------------------------------------------------------------------------


def summarize(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per dataset: images, subjects, age range and median (years), gender shares (%)."""
    rows = {}
    for name, table in tables.items():
        gender = table["gender"].value_counts(normalize=True, dropna=False) * 100
        rows[name] = {
            "images": len(table),
            "subjects": int(table["subject"].nunique()) if _has_subjects(table) else pd.NA,
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

    The default 12 bins of 10 years are C3AE's bins (0, 10, ..., 110).
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
    table.to_parquet(target)
    return target


def read_metadata_table(name: str) -> pd.DataFrame:
    """The metadata table notebook 01 saved for `name` (columns as `load_metadata` plus `split`)."""
    source = paths.metadata_path(name)
    if not source.exists():
        raise FileNotFoundError(
            f"{source} does not exist: run notebooks/01_explore_the_data.ipynb first "
            f"(or save one with datasets.write_metadata_table)."
        )
    return pd.read_parquet(source)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _describe(spec: DatasetSpec) -> str:
    size = f"{spec.download_size / 1e6:,.1f} MB" if spec.download_size else "size unpublished"
    state = "extracted" if is_complete(spec.name) else "not extracted"
    return f"{spec.name:10s} {spec.title} [{size}; {state}]"


def main(argv: list[str] | None = None) -> int:
    """`python -m c3ae_utils.datasets {list,fetch,check-access} [NAME]` (also `c3ae data`)."""
    parser = argparse.ArgumentParser(prog="c3ae data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show the registry")
    fetch_parser = commands.add_parser("fetch", help="download (or copy from the mirror) and extract")
    fetch_parser.add_argument("name", choices=sorted(REGISTRY))
    access = commands.add_parser("check-access", help="exit 1 when the dataset cannot be obtained")
    access.add_argument("name", choices=sorted(REGISTRY))
    access.add_argument("--timeout", type=float, default=5.0, help="seconds per URL probe")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "list":
        for spec in REGISTRY.values():
            print(_describe(spec))
        return 0
    if args.command == "check-access":
        ok, message = check_access(args.name, timeout=args.timeout)
        print(message if ok else f"error: {message}", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    try:
        folder = fetch(args.name)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(folder)
    return 0


__all__ = [
    "REGISTRY", "DatasetSpec", "RemoteFile", "MirrorFile", "LayoutCheck", "DownloadError",
    "get_spec", "download", "extract_archive", "fetch", "check_access", "is_complete",
    "load_metadata", "cleaning_report", "clean_imdb_wiki", "read_imdb_wiki_mat", "parse_utkface",
    "parse_fgnet", "split", "loso_folds", "subsample", "age_decade", "age_at_mid_year",
    "datenum_to_date", "file_digest", "verify_checksum", "summarize", "age_bin_counts",
    "write_metadata_table", "read_metadata_table",
]

if __name__ == "__main__":
    sys.exit(main())
