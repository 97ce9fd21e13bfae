"""`make book`: the course as a static site, built offline from the committed notebooks."""

from __future__ import annotations

import re

import nbformat
import pytest

from c3ae_utils import book, course, publishing


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return book.build_book(tmp_path_factory.mktemp("book"))


def test_the_book_has_every_notebook_solution_and_the_results(site):
    pages = {path.relative_to(site).as_posix() for path in site.rglob("*.html")}
    for notebook in course.list_notebooks():
        assert f"notebooks/{notebook.stem}.html" in pages
        assert f"solutions/ex{notebook.stem}.html" in pages
    assert {"index.html", "results.html"} <= pages
    index = (site / "index.html").read_text()
    assert index.count("href='notebooks/") == len(course.list_notebooks())


def test_the_built_book_has_no_broken_link_or_missing_figure(site):
    assert book.check_book(site) == []


def test_every_figure_of_a_notebook_is_on_its_page(site):
    for path in course.list_notebooks():
        page = (site / "notebooks" / f"{path.stem}.html").read_text()
        assert len(book.DATA_IMAGE.findall(page)) >= publishing.image_count(nbformat.read(path, as_version=4))


def test_links_between_notebooks_point_at_their_pages(site):
    links = re.findall(r'href="([^"]+)"', (site / "notebooks" / "06_error_analysis.html").read_text())
    assert not [link for link in links if link.endswith(".ipynb") and "://" not in link]


def test_the_check_names_a_broken_link_and_a_missing_figure(site, tmp_path):
    broken = tmp_path / "site"
    broken.mkdir()
    for path in site.rglob("*.html"):
        target = broken / path.relative_to(site)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (broken / "index.html").write_text((site / "index.html").read_text() + "<a href='notebooks/99_missing.html'>x</a>")
    figures = {path.stem: publishing.image_count(nbformat.read(path, as_version=4)) for path in course.list_notebooks()}
    stem = max(figures, key=figures.get)
    page = broken / "notebooks" / f"{stem}.html"
    page.write_text(re.sub(r'src="data:image/[^"]*"', 'src="missing.png"', page.read_text()))
    problems = book.check_book(broken)
    assert "index.html: broken link notebooks/99_missing.html" in problems
    assert any(problem.startswith(f"notebooks/{stem}.html: broken link missing.png") for problem in problems) == (figures[stem] > 0)
    assert any(f"notebooks/{stem}.html: 0 of" in problem for problem in problems) == (figures[stem] > 0)
