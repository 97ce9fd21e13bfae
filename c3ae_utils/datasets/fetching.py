"""Put a registered dataset into `paths.raw_dir()/<name>/`, from the mirror or its official home.

Contract: `fetch(name)` returns `raw_dir()/<name>` holding the dataset in the course layout
(docs/architecture.md) with a `.complete` marker, whether it came from the offline mirror
(`C3AE_DATA_MIRROR`, laid out like the course's `shared/data`) or from the official downloads
(kept in `download_dir()/<name>/`). The folder appears all at once: files are placed in a
temporary sibling that is renamed into place only when its layout checks pass, so a failure
leaves no half dataset under the final name, and the temporary folders of a killed fetch are
removed by the next one. With `C3AE_OFFLINE=1` the network is never used.
When nothing can provide the data, FileNotFoundError says how to fix it. `is_complete`,
`is_downloaded` and `check_access` answer quickly without fetching anything. `link_mirror`
lays out a folder like the mirror with the files this machine already holds, byte for byte
(the tests use it where no mirror exists).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from c3ae_utils import paths
from c3ae_utils.datasets.downloader import DownloadError, download, file_digest, verify_checksum
from c3ae_utils.datasets.extract import extract_archive, is_archive
from c3ae_utils.datasets.registry import (
    MARKER,
    MIRROR_VARIABLE,
    OFFLINE_VARIABLE,
    REGISTRY,
    USER_AGENT,
    DatasetSpec,
    MirrorFile,
    get_spec,
)

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Layout of an extracted folder
# --------------------------------------------------------------------------------------------


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
    """The first folder under `root` (sorted by path) that `accept` takes, else None."""
    for folder in sorted(path for path in root.rglob("*") if path.is_dir()):
        if accept(folder):
            return folder
    return None


def _normalise_utkface(folder: Path) -> None:
    """Rename the folder of `*.chip.jpg` faces to `UTKFace/`."""
    if (folder / "UTKFace").is_dir():
        return
    found = _find_dir(folder, lambda d: any(d.glob("*.chip.jpg")))
    if found is not None:
        found.rename(folder / "UTKFace")


def _normalise_fgnet(folder: Path) -> None:
    """Move `images/` (and its siblings `points/`, ...) into `FGNET/`."""
    if (folder / "FGNET" / "images").is_dir():
        return
    found = _find_dir(folder, lambda d: d.name.lower() == "images" and any(d.glob("*.[jJ][pP][gG]")))
    if found is None:
        return
    (folder / "FGNET").mkdir(exist_ok=True)
    for sibling in found.parent.iterdir():  # images/, points/, ... move together
        if sibling.resolve() != (folder / "FGNET").resolve():
            sibling.rename(folder / "FGNET" / sibling.name)


def _normalise_imdb_wiki(name: str, folder: Path) -> None:
    """Move `<name>.mat` out of `<name>_crop/`, where the official tar keeps it."""
    inside = folder / f"{name}_crop" / f"{name}.mat"
    if inside.exists() and not (folder / f"{name}.mat").exists():
        inside.rename(folder / f"{name}.mat")


def _normalise_layout(name: str, folder: Path) -> None:
    """Move an official archive's folders to the course layout (docs/architecture.md)."""
    if name == "utkface":
        _normalise_utkface(folder)
    elif name == "fgnet":
        _normalise_fgnet(folder)
    elif name in {"wiki", "imdb"}:
        _normalise_imdb_wiki(name, folder)


def _process_alive(pid: int) -> bool:
    """True when process `pid` may still run (on Windows, or when in doubt: True)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it runs, as another user
        return True
    return True


def _remove_leftovers(target: Path) -> None:
    """Delete the `.<name>.partial-<pid>` and `.<name>.old-<pid>` folders beside `target` that
    fetches killed before they could clean up left behind (their process no longer runs).

    A fetch of this process never overlaps this one (so its own pid is stale too); a folder of a
    running process is another fetch at work and stays. Downloads are not here: their
    `<file>.part` in `download_dir()` is resumed by `download`.
    """
    for kind in ("partial", "old"):
        for folder in target.parent.glob(f".{target.name}.{kind}-*"):
            pid = folder.name.rsplit("-", 1)[-1]
            if pid.isdigit() and (int(pid) == os.getpid() or not _process_alive(int(pid))):
                logger.info("Removing %s, left by an interrupted fetch", folder)
                shutil.rmtree(folder, ignore_errors=True)


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
    """Write the `.complete` marker (JSON: source, UTC completion time) atomically."""
    info = {
        "source": source,
        "completed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    paths.write_text_atomic(folder / MARKER, json.dumps(info) + "\n")


# --------------------------------------------------------------------------------------------
# Sources: the mirror and the official downloads
# --------------------------------------------------------------------------------------------


def _offline() -> bool:
    """True when `C3AE_OFFLINE` forbids the network."""
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


def _check_mirror_file(item: MirrorFile, path: Path) -> None:
    """ValueError when the mirror file `path` has the wrong size or SHA-256."""
    if item.size is not None and path.stat().st_size != item.size:
        raise ValueError(
            f"Mirror file {path} has {path.stat().st_size:,} bytes, expected {item.size:,}: "
            f"the mirror is damaged. Replace it or unset {MIRROR_VARIABLE}."
        )
    if item.sha256 is None:
        logger.warning("No checksum known for mirror file %s; using it unverified", path)
        return
    try:
        verify_checksum(path, sha256=item.sha256)
    except ValueError as error:
        raise ValueError(f"{error} The mirror file {path} is damaged: replace it or "
                         f"unset {MIRROR_VARIABLE} to download from the official URL.") from None


def _place(source: Path, target: str | None, folder: Path) -> None:
    """Extract an archive into `folder`, or copy a plain file to `folder/target`."""
    if is_archive(source.name) and target is None:
        extract_archive(source, folder)
    else:
        destination = folder / (target or source.name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)


def _populate_from_mirror(sources: list[tuple[MirrorFile, Path]], folder: Path) -> None:
    """Check each mirror file, then extract or copy it into `folder`."""
    for item, path in sources:
        _check_mirror_file(item, path)
        _place(path, item.target, folder)


def _unavailable_message(spec: DatasetSpec, reason: str) -> str:
    """Why `spec` cannot be obtained and the two ways to fix it."""
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
    """Download (or reuse) each official file in `download_dir()/name/`, then place it."""
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


def _populate(spec: DatasetSpec, folder: Path, progress: bool) -> str:
    """Fill `folder` from the mirror if it holds `spec`, else from the downloads; the source."""
    sources = _mirror_sources(spec)
    if sources is not None:
        logger.info("Copying %s from the mirror %s", spec.name, paths.mirror_dir())
        _populate_from_mirror(sources, folder)
        return f"mirror {paths.mirror_dir()}"
    _populate_from_downloads(spec, folder, progress)
    return ", ".join(remote.url for remote in spec.downloads)


# --------------------------------------------------------------------------------------------
# Fetch and access checks
# --------------------------------------------------------------------------------------------


def is_complete(name: str) -> bool:
    """True when `raw_dir()/name` carries the `.complete` marker."""
    return (paths.raw_dir() / name / MARKER).exists()


def is_downloaded(name: str) -> bool:
    """True when every official file of `name` is in `download_dir()/name/`. A download is
    renamed there only once its size and checksum are right (until then it is `<file>.part`),
    and `fetch` checks the checksum again before it extracts the file."""
    folder = paths.download_dir() / name
    return all((folder / remote.filename).is_file() for remote in get_spec(name).downloads)


def _build(spec: DatasetSpec, temporary: Path, target: Path, progress: bool) -> None:
    """Populate `temporary`, check its layout, mark it and rename it to `target`."""
    source = _populate(spec, temporary, progress)
    _normalise_layout(spec.name, temporary)
    problems = _layout_problems(spec, temporary)
    if problems:
        raise ValueError(
            f"{spec.name} was extracted from {source} but its layout is unexpected: "
            f"{'; '.join(problems)}. Delete the downloaded files and fetch again."
        )
    _write_marker(temporary, source)
    if (target / MARKER).exists():  # another process finished first
        shutil.rmtree(temporary)
    else:
        _replace_dir(temporary, target)


def fetch(name: str | DatasetSpec, *, progress: bool = True) -> Path:
    """Make `raw_dir()/name` hold the dataset in the course layout and return that folder.

    Uses the offline mirror (`C3AE_DATA_MIRROR`) when it holds the dataset, else downloads
    the official files into `download_dir()/name/`. Idempotent: a folder with the `.complete`
    marker is returned at once; a folder extracted by hand with the right file counts gets
    the marker. Extraction happens in a temporary sibling folder that is renamed into place
    only when complete; the temporary folders of fetches that were killed (their process is
    gone) are removed, and a killed download resumes from its `.part` file. `name` may also be
    a `DatasetSpec` (e.g. a registry entry with another URL, via `dataclasses.replace`).
    """
    spec = name if isinstance(name, DatasetSpec) else get_spec(name)
    target = paths.raw_dir() / spec.name
    if target.parent.is_dir():
        _remove_leftovers(target)
    if (target / MARKER).exists():
        return target
    if target.is_dir() and not _layout_problems(spec, target):
        logger.info("%s is already extracted; marking it complete", target)
        _write_marker(target, "found already extracted")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{spec.name}.partial-{os.getpid()}")
    temporary.mkdir()
    try:
        _build(spec, temporary, target, progress)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target


def _probe(url: str, timeout: float) -> None:
    """Read the first byte of `url` (Range 0-0); raises URLError/OSError when unreachable."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Range": "bytes=0-0"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read(1)


def check_access(name_or_spec: str | DatasetSpec, timeout: float = 5.0) -> tuple[bool, str]:
    """Can `fetch` obtain the dataset? Returns (ok, message) within about `timeout` seconds.

    True when it is already extracted, when the mirror holds it, when its downloads are
    already on disk, or when the first byte of each official URL can be read.
    """
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    if is_complete(spec.name):
        return True, f"{spec.name}: already extracted in {paths.raw_dir() / spec.name}"
    if _mirror_sources(spec) is not None:
        return True, f"{spec.name}: available in the mirror {paths.mirror_dir()}"
    downloads = paths.download_dir() / spec.name
    if all((downloads / remote.filename).exists() for remote in spec.downloads):
        return True, f"{spec.name}: already downloaded in {downloads}"
    if _offline():
        return False, _unavailable_message(spec, f"{OFFLINE_VARIABLE} is set")
    for remote in spec.downloads:
        try:
            _probe(remote.url, timeout)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            return False, _unavailable_message(spec, f"{remote.url}: {reason}")
    return True, f"{spec.name}: the official source is reachable"


# --------------------------------------------------------------------------------------------
# A mirror made of the files this machine already holds
# --------------------------------------------------------------------------------------------


def _same_file(path: Path, item: MirrorFile) -> bool:
    """True when `path` is a file with the size (bytes) and SHA-256 of the mirror file `item`."""
    if item.sha256 is None or not path.is_file():
        return False
    if item.size is not None and path.stat().st_size != item.size:
        return False
    return file_digest(path) == item.sha256


def _held_copy(spec: DatasetSpec, item: MirrorFile) -> Path | None:
    """A file on this machine that is byte for byte the mirror file `item` of `spec`: an official
    download with the same SHA-256 (in `download_dir()/name/`), or the plain file `fetch` placed
    at `raw_dir()/name/<target>`; None when there is none."""
    candidates = [paths.download_dir() / spec.name / remote.filename
                  for remote in spec.downloads if remote.sha256 is not None and remote.sha256 == item.sha256]
    if item.target is not None:
        candidates.append(paths.raw_dir() / spec.name / item.target)
    return next((path for path in candidates if _same_file(path, item)), None)


def _link(source: Path, link: Path) -> None:
    """Make `link` a symbolic link to `source` (a copy where the system allows no links)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    try:
        link.symlink_to(source)
    except OSError:  # e.g. Windows without the right to make links
        shutil.copyfile(source, link)


def link_mirror(folder: Path) -> list[str]:
    """Lay out `folder` like the offline mirror (`C3AE_DATA_MIRROR`) with what this machine holds.

    Each mirror file of the registry that is byte for byte (size and SHA-256) an official
    download in `download_dir()`, or a file `fetch` placed in `raw_dir()`, is linked at its
    mirror path (the reference weights and pictures, the demo files, `wiki.mat`). The mirror's
    own archives (UTKFace in two parts, FGNET.tar) are not the official ones and are never
    linked: with this folder as the mirror, `fetch` extracts the official downloads for those.
    Returns the mirror paths linked, sorted.
    """
    linked = []
    for spec in REGISTRY.values():
        for item in spec.mirror:
            source = _held_copy(spec, item)
            if source is not None:
                _link(source, Path(folder) / item.path)
                linked.append(item.path)
    return sorted(linked)
