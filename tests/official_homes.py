"""A folder served on 127.0.0.1 in place of the datasets' official hosts, for the tests that
download for real: every host's paths under one folder, each request recorded."""

from __future__ import annotations

import contextlib
import functools
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class OfficialHome(ThreadingHTTPServer):
    """Serves `folder`; `url_for` turns an official URL into this server's, `requested` lists
    the paths asked for."""

    def __init__(self, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
        self.requested: list[str] = []

    def url_for(self, official_url: str) -> str:
        """`official_url` with this server in place of its host."""
        parts = urllib.parse.urlsplit(official_url)
        return parts._replace(scheme="http", netloc=f"127.0.0.1:{self.server_address[1]}").geturl()


class _Handler(SimpleHTTPRequestHandler):
    server: OfficialHome

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requested.append(self.path)
        super().do_GET()


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[OfficialHome]:
    """An `OfficialHome` of `folder`, running until the block ends."""
    server = OfficialHome(folder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
