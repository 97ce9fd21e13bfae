"""Safe extraction of the archives datasets come in (`.tar`, `.tar.gz`/`.tgz`, `.zip`).

Contract: `extract_archive(archive, destination)` writes only inside `destination`. Members
with absolute paths, `..`, or links pointing outside are refused with ValueError before
anything of theirs is written; special files (devices, FIFOs) are skipped; a truncated or
corrupt archive raises ValueError. It is not atomic by itself: callers extract into a
temporary folder and rename it into place (see `fetching.fetch`).
"""

from __future__ import annotations

import logging
import re
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

logger = logging.getLogger(__name__)

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
    """The files, folders and inside-pointing links of `tar`; ValueError on an unsafe member."""
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


def _extract_zip(archive: Path, destination: Path) -> None:
    """Check every member name of a zip, then extract it."""
    with zipfile.ZipFile(archive) as bundle:
        for name in bundle.namelist():
            _check_member_name(name, archive)
        bundle.extractall(destination)


def _extract_tar(archive: Path, destination: Path) -> None:
    """Extract the safe members of a (possibly compressed) tar, checked as they stream by."""
    with tarfile.open(archive, "r:*") as tar:
        members = _safe_tar_members(tar, archive)
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
            tar.extractall(destination, members=members, filter="data")
        else:  # pragma: no cover - older Pythons
            tar.extractall(destination, members=members)


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
            _extract_zip(archive, destination)
        else:
            _extract_tar(archive, destination)
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
