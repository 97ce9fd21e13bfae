"""Downloader and extraction against a real HTTP server on 127.0.0.1 and archives made here."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import random
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from c3ae_utils import datasets

PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class FileServer(ThreadingHTTPServer):
    """Serves `files` (path -> bytes); records (path, Range header) of every request.

    Path prefixes change the behaviour: `/truncate-once/` sends half the body of the first
    request and closes the connection; `/no-range/` ignores Range; `/error/` answers 500.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.truncated: set[str] = set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class RangeHandler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        range_header = self.headers.get("Range")
        self.server.requests.append((self.path, range_header))
        if self.path.startswith("/error/"):
            self.send_error(500, "Internal Server Error")
            return
        name = "/" + self.path.split("/")[-1]
        if name not in self.server.files:
            self.send_error(404)
            return
        body = self.server.files[name]
        start = 0
        if range_header and not self.path.startswith("/no-range/"):
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path.startswith("/truncate-once/") and self.path not in self.server.truncated:
            self.server.truncated.add(self.path)
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server() -> Iterator[FileServer]:
    httpd = FileServer()
    httpd.files["/payload.bin"] = PAYLOAD
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def data_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private raw and download folders, an empty mirror, and no network for official URLs."""
    monkeypatch.setenv("C3AE_DATA_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("C3AE_DOWNLOAD_DIR", str(tmp_path / "downloads"))
    (tmp_path / "empty_mirror").mkdir()
    monkeypatch.setenv("C3AE_DATA_MIRROR", str(tmp_path / "empty_mirror"))
    return tmp_path


def closed_port_url(path: str) -> str:
    """A 127.0.0.1 URL nobody listens on (connection refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz",
             symlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


# ------------------------------------------------------------------------------ download


def test_full_download_verifies_sha256_and_md5(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "payload.bin"
    result = datasets.download(server.url("/payload.bin"), target, sha256=PAYLOAD_SHA256,
                               md5=PAYLOAD_MD5, size=len(PAYLOAD), progress=False)
    assert result == target
    assert target.read_bytes() == PAYLOAD
    assert not (tmp_path / "payload.bin.part").exists()
    assert server.requests == [("/payload.bin", None)]


def test_download_resumes_after_a_truncated_first_attempt(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "payload.bin"
    url = server.url("/truncate-once/payload.bin")
    with pytest.raises(datasets.DownloadError, match="run again to resume"):
        datasets.download(url, target, sha256=PAYLOAD_SHA256, retries=0, progress=False)
    part = tmp_path / "payload.bin.part"
    assert not target.exists(), "a half file must never appear under the final name"
    assert part.read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]
    datasets.download(url, target, sha256=PAYLOAD_SHA256, retries=0, progress=False)
    assert target.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.requests[-1] == ("/truncate-once/payload.bin", f"bytes={len(PAYLOAD) // 2}-")


def test_download_retries_and_resumes_by_itself(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "payload.bin"
    datasets.download(server.url("/truncate-once/payload.bin"), target, sha256=PAYLOAD_SHA256,
                      retries=1, progress=False)
    assert target.read_bytes() == PAYLOAD
    assert [header for _, header in server.requests] == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_download_restarts_when_the_server_ignores_range(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "payload.bin"
    (tmp_path / "payload.bin.part").write_bytes(b"stale bytes from another file")
    datasets.download(server.url("/no-range/payload.bin"), target, sha256=PAYLOAD_SHA256,
                      progress=False)
    assert target.read_bytes() == PAYLOAD


def test_checksum_mismatch_removes_the_partial_file(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "payload.bin"
    wrong = "0" * 64
    with pytest.raises(ValueError) as raised:
        datasets.download(server.url("/payload.bin"), target, sha256=wrong, progress=False)
    assert wrong in str(raised.value) and PAYLOAD_SHA256 in str(raised.value)
    assert not target.exists()
    assert not (tmp_path / "payload.bin.part").exists()


def test_md5_mismatch_names_both_hashes(server: FileServer, tmp_path: Path) -> None:
    wrong = "f" * 32
    with pytest.raises(ValueError, match=f"expected md5 {wrong}, got {PAYLOAD_MD5}"):
        datasets.download(server.url("/payload.bin"), tmp_path / "p.bin", md5=wrong, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_is_refused(server: FileServer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Size mismatch"):
        datasets.download(server.url("/payload.bin"), tmp_path / "p.bin", size=123, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_server_error_leaves_no_file(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "payload.bin"
    with pytest.raises(datasets.DownloadError, match="HTTP 500") as raised:
        datasets.download(server.url("/error/payload.bin"), target, retries=1, progress=False)
    assert raised.value.status == 500
    assert len(server.requests) == 2, "a server error is retried"
    assert not target.exists()


def test_unpublished_checksum_is_recorded_then_enforced(server: FileServer, tmp_path: Path) -> None:
    target = tmp_path / "payload.bin"
    datasets.download(server.url("/payload.bin"), target, progress=False)
    record = (tmp_path / "payload.bin.json").read_text()
    assert PAYLOAD_SHA256 in record and str(len(PAYLOAD)) in record
    target.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="delete it and run again"):
        datasets.download(server.url("/payload.bin"), target, progress=False)


# ------------------------------------------------------------------------------ extraction


def test_extraction_refuses_parent_directory_members(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", {"ok/a.txt": b"a", "../evil": b"pwned"})
    with pytest.raises(ValueError, match=r"'\.\./evil'"):
        datasets.extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil").exists()


def test_extraction_refuses_absolute_members(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "abs.tar", {"/tmp/c3ae_absolute_member": b"x"}, mode="w")
    with pytest.raises(ValueError, match="absolute path"):
        datasets.extract_archive(archive, tmp_path / "out")
    assert not Path("/tmp/c3ae_absolute_member").exists()


def test_extraction_refuses_links_pointing_outside(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "link.tar", {"a.txt": b"a"}, mode="w",
                       symlinks={"sub/escape": "../../outside"})
    with pytest.raises(ValueError, match="Refusing"):
        datasets.extract_archive(archive, tmp_path / "out")


def test_extraction_refuses_zip_members_climbing_out(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../evil.txt", b"pwned")
    with pytest.raises(ValueError, match="absolute path or '..'"):
        datasets.extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_truncated_archive_is_reported(tmp_path: Path) -> None:
    members = {f"UTKFace/{age}_0_0_2017.jpg.chip.jpg": random.Random(age).randbytes(20_000)
               for age in range(1, 6)}
    archive = make_tar(tmp_path / "full.tar.gz", members)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        datasets.extract_archive(truncated, tmp_path / "out")


# ------------------------------------------------------------------------------ fetch


def tiny_spec(name: str, url: str, filename: str, sha256: str | None,
              layout: tuple[datasets.LayoutCheck, ...]) -> datasets.DatasetSpec:
    """The registry entry of `name`, downloading a small archive from `url` instead."""
    remote = datasets.RemoteFile(url, filename, sha256=sha256)
    return dataclasses.replace(datasets.get_spec(name), downloads=(remote,), layout=layout)


def test_fetch_extracts_an_official_style_archive_atomically(
    server: FileServer, data_dirs: Path
) -> None:
    # The official UTKFace.tar.gz has one folder of faces; here it is named differently, to
    # check that fetch moves it to the course layout utkface/UTKFace/.
    names = ["1_0_0_20170109150557335.jpg.chip.jpg", "39_1_20170116174525125.jpg.chip.jpg"]
    archive = make_tar(data_dirs / "UTKFace.tar.gz", {f"crop/{n}": b"jpeg" for n in names})
    server.files["/UTKFace.tar.gz"] = archive.read_bytes()
    spec = tiny_spec("utkface", server.url("/UTKFace.tar.gz"), "UTKFace.tar.gz",
                     datasets.file_digest(archive), (datasets.LayoutCheck("UTKFace/*.jpg", (2,)),))
    stale = data_dirs / "raw" / "utkface"
    stale.mkdir(parents=True)
    (stale / "half_extracted.jpg").write_bytes(b"x")

    folder = datasets.fetch(spec, progress=False)
    assert folder == data_dirs / "raw" / "utkface"
    assert sorted(p.name for p in (folder / "UTKFace").iterdir()) == sorted(names)
    assert (folder / datasets.MARKER).exists() and not (folder / "half_extracted.jpg").exists()
    assert sorted(p.name for p in (data_dirs / "raw").iterdir()) == ["utkface"]
    assert (data_dirs / "downloads" / "utkface" / "UTKFace.tar.gz").exists()
    table = datasets.parse_utkface(folder / "UTKFace")
    assert table["age"].tolist() == [1, 39] and table["race"].isna().tolist() == [False, True]
    requests = len(server.requests)
    assert datasets.fetch(spec, progress=False) == folder
    assert len(server.requests) == requests, "a second fetch does nothing"


def test_fetch_moves_the_mat_file_out_of_the_official_wiki_tar(
    server: FileServer, data_dirs: Path
) -> None:
    archive = make_tar(data_dirs / "wiki_crop.tar", {"wiki_crop/wiki.mat": b"MATLAB",
                                                     "wiki_crop/17/1_1981-05-05_2009.jpg": b"j"},
                       mode="w")
    server.files["/wiki_crop.tar"] = archive.read_bytes()
    spec = tiny_spec("wiki", server.url("/wiki_crop.tar"), "wiki_crop.tar", None,
                     datasets.get_spec("wiki").layout)
    folder = datasets.fetch(spec, progress=False)
    assert (folder / "wiki.mat").read_bytes() == b"MATLAB"
    assert (folder / "wiki_crop" / "17" / "1_1981-05-05_2009.jpg").exists()
    assert "sha256" in (data_dirs / "downloads" / "wiki" / "wiki_crop.tar.json").read_text()


def test_fetch_of_a_zip_arranges_fgnet(server: FileServer, data_dirs: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name in ("001A02.JPG", "001A43a.JPG", "002A05.JPG"):
            bundle.writestr(f"images/{name}", b"jpeg")
            bundle.writestr(f"points/{name.lower().replace('.jpg', '.pts')}", b"version: 1")
    server.files["/FGNET.zip"] = buffer.getvalue()
    spec = tiny_spec("fgnet", server.url("/FGNET.zip"), "FGNET.zip",
                     hashlib.sha256(buffer.getvalue()).hexdigest(),
                     (datasets.LayoutCheck("FGNET/images/*.JPG", (3,)),))
    table = datasets.parse_fgnet(datasets.fetch(spec, progress=False) / "FGNET")
    assert table["subject"].tolist() == ["001", "001", "002"]
    assert table["age"].tolist() == [2, 43, 5]
    assert table["points_path"].notna().all()


def test_fetch_of_a_truncated_download_leaves_nothing(server: FileServer, data_dirs: Path) -> None:
    archive = make_tar(data_dirs / "t.tar.gz",
                       {f"UTKFace/{i}_0_0_1.jpg.chip.jpg": random.Random(i).randbytes(50_000)
                        for i in range(1, 4)})
    truncated = archive.read_bytes()[:30_000]
    server.files["/t.tar.gz"] = truncated
    spec = tiny_spec("utkface", server.url("/t.tar.gz"), "t.tar.gz",
                     hashlib.sha256(truncated).hexdigest(),
                     (datasets.LayoutCheck("UTKFace/*.jpg", (3,)),))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        datasets.fetch(spec, progress=False)
    assert not (data_dirs / "raw").exists() or list((data_dirs / "raw").iterdir()) == []


def test_fetch_marks_a_folder_extracted_by_hand(data_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C3AE_OFFLINE", "1")
    folder = data_dirs / "raw" / "utkface" / "UTKFace"
    folder.mkdir(parents=True)
    for name in ("1_0_0_1.jpg.chip.jpg", "2_1_3_2.jpg.chip.jpg"):
        (folder / name).write_bytes(b"jpeg")
    spec = dataclasses.replace(datasets.get_spec("utkface"),
                               layout=(datasets.LayoutCheck("UTKFace/*.jpg", (2,)),))
    assert datasets.fetch(spec) == folder.parent
    assert (folder.parent / datasets.MARKER).exists()
    assert datasets.is_complete("utkface")


def test_missing_dataset_without_mirror_or_network_names_the_fixes(
    data_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = dataclasses.replace(
        datasets.get_spec("wiki"),
        downloads=(datasets.RemoteFile(closed_port_url("/wiki_crop.tar"), "wiki_crop.tar"),),
    )
    with pytest.raises(FileNotFoundError) as raised:
        datasets.fetch(spec, progress=False)
    message = str(raised.value)
    assert "C3AE_DATA_MIRROR" in message and spec.downloads[0].url in message
    ok, access_message = datasets.check_access(spec, timeout=2)
    assert not ok and "C3AE_DATA_MIRROR" in access_message
    # With the network switched off, the real registry entry gives the official URL.
    monkeypatch.setenv("C3AE_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="wiki_crop.tar"):
        datasets.fetch("wiki")


def test_check_access_command_fails_fast_with_advice(data_dirs: Path) -> None:
    env = {**os.environ, "C3AE_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "c3ae_utils.datasets", "check-access", "utkface"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    assert "C3AE_DATA_MIRROR" in result.stderr
    assert "huggingface.co/datasets/py97/UTKFace-Cropped" in result.stderr


def test_check_access_reports_a_reachable_source(server: FileServer, data_dirs: Path) -> None:
    spec = tiny_spec("wiki", server.url("/payload.bin"), "wiki_crop.tar", None, ())
    ok, message = datasets.check_access(spec)
    assert ok, message
    assert server.requests[-1][1] == "bytes=0-0"
