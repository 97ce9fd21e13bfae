"""Resumable, checksummed HTTP downloads of single files.

Contract: `download(url, target, ...)` either leaves a complete `target` whose size and digest
are the expected ones, or raises and leaves no `target`. Bytes arrive in `<target>.part`, which
survives an interruption so the next call resumes it with an HTTP Range request; a size or
checksum mismatch deletes it (ValueError naming both values). For files whose source publishes
no checksum, the size and hashes are recorded (atomically) in `<target>.json` after the first
download and enforced afterwards. Transfer failures raise `DownloadError`. `file_digest` and
`verify_checksum` check any local file.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from c3ae_utils import paths
from c3ae_utils.datasets.registry import USER_AGENT

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # bytes read (and hashed) at a time


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
    """Where the recorded size and hashes of `target` live (`<target>.json`)."""
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
    paths.write_text_atomic(_record_path(target), json.dumps(record, indent=2) + "\n")
    return record


def _expected_digests(target: Path, sha256: str | None, md5: str | None) -> tuple[str | None, str | None]:
    """Published digests, or those recorded after an earlier download of an unpublished file."""
    if sha256 is None and md5 is None and _record_path(target).exists():
        record = json.loads(_record_path(target).read_text())
        return record.get("sha256"), None
    return sha256, md5


def _open_url(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """GET `url` (from byte `offset` with a Range header when `offset` > 0)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _open_or_raise(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """`_open_url`, with failures as DownloadError; None when `offset` is already the end."""
    try:
        return _open_url(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the part already holds every byte
            return None
        raise DownloadError(f"Download of {url} failed: HTTP {error.code} {error.reason}.",
                            status=error.code, retry=error.code >= 500) from error
    except (urllib.error.URLError, OSError) as error:  # no network, refused, timed out
        reason = getattr(error, "reason", error)
        raise DownloadError(f"Cannot reach {url} ({reason}).", retry=False) from error


def _copy_body(response: http.client.HTTPResponse, url: str, part: Path, offset: int,
               progress: bool) -> None:
    """Write the response body to `part` (appended after `offset` bytes, or from the start)."""
    if offset and response.status != 206:  # the server ignored Range: start again
        logger.info("%s does not support resuming; downloading from the start", url)
        offset = 0
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None else None
    received = offset
    with open(part, "ab" if offset else "wb") as stream, tqdm(
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


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of `url` to `part` (HTTP Range when `part` already holds bytes)."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open_or_raise(url, offset, timeout)
    if response is None:
        return
    with response:
        _copy_body(response, url, part, offset, progress)


def _transfer_with_retries(url: str, part: Path, retries: int, timeout: float,
                           progress: bool) -> None:
    """`_transfer`, retried (resuming) up to `retries` times with a capped exponential pause."""
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout, progress)
            return
        except DownloadError as error:
            if attempt == retries or not error.retry:
                raise
            logger.warning("%s Retrying (%d/%d).", error, attempt + 1, retries)
            time.sleep(min(2.0**attempt, 10.0))


def _verify_part(part: Path, url: str, target: Path, size: int | None, sha256: str | None,
                 md5: str | None) -> None:
    """Check the finished `part` against `size` (bytes) and the digests; delete it on mismatch."""
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
    up to `retries` times; `timeout` in seconds per connection); only a file with the
    expected `size` (bytes) and digest is renamed to `target`. A checksum mismatch removes the
    partial file and raises ValueError giving both hashes. Without a published checksum, size
    and hashes are recorded in `<target>.json` and later downloads are checked against them.
    An existing valid `target` is returned as is.
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
    _transfer_with_retries(url, part, retries, timeout, progress)
    _verify_part(part, url, target, size, sha256, md5)
    os.replace(part, target)
    if sha256 is None and md5 is None:
        record = _write_record(target, url)
        logger.info("No published checksum for %s: recorded size %s and sha256 %s in %s",
                    target.name, record["size"], record["sha256"], _record_path(target).name)
    return target
