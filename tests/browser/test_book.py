"""The built book (`make book`) in a real browser: notebook 05's page, its figures rendered."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest

from c3ae_utils import book, course, publishing

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.browser]

# Every image of the page that the browser decoded (a figure that failed to load has no width).
RENDERED_IMAGES_JS = "() => [...document.images].filter(image => image.complete && image.naturalWidth > 0).length"


@pytest.fixture(scope="module")
def served_book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The book built from the committed notebooks, served on 127.0.0.1; yields its address."""
    site = book.build_book(tmp_path_factory.mktemp("book"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_notebook_05_page_shows_its_figures(chromium: Browser, served_book: str) -> None:
    notebook = course.find_notebook("05")
    expected = publishing.image_count(nbformat.read(notebook, as_version=4))
    assert expected >= 1, "notebook 05 is published with its figures (make run-all && make publish)"
    page = chromium.new_page()
    page.goto(f"{served_book}/index.html")
    page.click("text=" + book.notebook_title(nbformat.read(notebook, as_version=4), notebook.stem))
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/notebooks/{notebook.stem}.html")
    assert "focal" in page.locator("h1").first.inner_text().lower()
    assert page.evaluate(RENDERED_IMAGES_JS) == expected
    screenshots = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
    screenshots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshots / "book_05.png"), full_page=False)
    page.close()
