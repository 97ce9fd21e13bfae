"""The course as a static site (`make book` -> `_build/book/`), built offline from the committed
notebooks without executing them: a front page with the notebook table, one page per notebook
(its figures embedded), one per worked solution, and the results page (docs/results.md).

    python -m c3ae_utils.book [--out _build/book]

`check_book` then reads every page back: a relative link or image that points at no file of the
site, or a notebook page with fewer figures than its notebook, is a problem, and the command
exits 1 naming each one.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import mistune
import nbformat
from nbconvert import HTMLExporter
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from c3ae_utils import cli, course, datasets, paths, publishing

DEFAULT_OUT = Path("_build") / "book"
LINK = re.compile(r"""(href|src)=(["'])(.*?)\2""")
HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>")
ANCHOR_ID = re.compile(r"""\bid=(["'])(.*?)\1""")
DATA_IMAGE = re.compile(r'<img[^>]+src="data:image/')
STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem}nav{margin-bottom:1rem}"""


def _page(title: str, body: str, depth: int) -> str:
    """A standalone HTML page; `depth` is how many folders below the site's root it lies."""
    home = "../" * depth + "index.html"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><nav><a href='{home}'>C3AE course</a></nav>{body}</body></html>")


def _site_target(link: str, page_source: Path) -> str:
    """Where a relative link of a source file (notebook, markdown) points inside the site, or
    its address on the repository when the site has no page for it."""
    path, _, anchor = link.partition("#")
    resolved = (page_source.parent / path).resolve()
    root = paths.repo_root().resolve()
    try:
        relative = resolved.relative_to(root)
    except ValueError:
        return link
    suffix = f"#{anchor}" if anchor else ""
    if relative.parent.name == "notebooks" and relative.suffix == ".ipynb":
        return f"notebooks/{relative.stem}.html{suffix}"
    if relative.parent.name == "solutions" and relative.name.startswith("ex") and relative.suffix == ".py":
        return f"solutions/{relative.stem}.html{suffix}"
    if relative.as_posix() == "docs/results.md":
        return f"results.html{suffix}"
    return f"{datasets.registry.repository_url()}/blob/main/{relative.as_posix()}{suffix}"


def _rewrite_links(text: str, page_source: Path, depth: int) -> str:
    """Relative links of a page made from `page_source`, pointed at the site (or the repository)."""
    def replace(match: re.Match) -> str:
        attribute, quote, link = match.groups()
        if not link or re.match(r"^([a-z]+:|#|/)", link):  # absolute, anchors, data: and mailto:
            return match.group(0)
        target = _site_target(link, page_source)
        if "://" not in target:
            target = "../" * depth + target
        return f"{attribute}={quote}{target}{quote}"
    return LINK.sub(replace, text)


def notebook_title(notebook: nbformat.NotebookNode, fallback: str) -> str:
    """The first Markdown heading of the notebook (without the '#'), or `fallback`."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def _write(path: Path, text: str) -> Path:
    paths.ensure_dir(path.parent)
    return paths.write_text_atomic(path, text)


def build_notebook_pages(out: Path) -> list[tuple[str, str, int]]:
    """One page per course notebook; returns (file name, title, figures) per notebook, in order."""
    exporter = HTMLExporter(template_name="lab")
    rows = []
    for path in course.list_notebooks():
        notebook = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(notebook)
        _write(out / "notebooks" / f"{path.stem}.html", _rewrite_links(body, path, depth=1))
        rows.append((path.stem, notebook_title(notebook, path.stem), publishing.image_count(notebook)))
    return rows


def build_solution_pages(out: Path) -> list[str]:
    """One highlighted page per worked solution (`solutions/exNN_*.py`); returns their stems."""
    formatter = HtmlFormatter(style="default")
    stems = []
    for path in sorted((paths.repo_root() / "solutions").glob("ex[0-9][0-9]_*.py")):
        code = highlight(path.read_text(), PythonLexer(), formatter)
        body = f"<style>{formatter.get_style_defs('.highlight')}</style><h1>{path.name}</h1>{code}"
        _write(out / "solutions" / f"{path.stem}.html", _page(path.name, body, depth=1))
        stems.append(path.stem)
    return stems


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", html.unescape(heading)).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _with_heading_ids(body: str) -> str:
    """Headings of rendered Markdown with GitHub's ids, so the page's `#anchor` links work."""
    return HEADING.sub(lambda m: f'<h{m.group(1)} id="{_slug(m.group(2))}">{m.group(2)}</h{m.group(1)}>', body)


def build_results_page(out: Path) -> None:
    """docs/results.md as `results.html`."""
    source = paths.repo_root() / "docs" / "results.md"
    body = _with_heading_ids(mistune.html(source.read_text()))
    _write(out / "results.html", _page("Results", _rewrite_links(body, source, depth=0), depth=0))


def build_index(out: Path, notebooks: list[tuple[str, str, int]], solutions: list[str]) -> None:
    """The front page: the notebook table (with each notebook's figures and minutes), the
    solutions and the results page."""
    rows = "".join(
        f"<tr><td><a href='notebooks/{stem}.html'>{html.escape(title)}</a></td><td>{figures}</td>"
        f"<td>{course.NOTEBOOK_MINUTES[stem[:2]][1]:g}</td>"
        f"<td><a href='solutions/ex{stem}.html'>solutions</a></td></tr>"
        for stem, title, figures in notebooks
        if f"ex{stem}" in solutions
    )
    body = (
        "<h1>C3AE: compact age estimation, rebuilt and measured</h1>"
        "<table><tr><th>notebook</th><th>figures</th><th>full run (min, 2 CPU cores)</th><th></th></tr>"
        f"{rows}</table><p><a href='results.html'>Results</a> of the course's runs and models.</p>"
    )
    _write(out / "index.html", _page("C3AE course", body, depth=0))


def build_book(out: Path | None = None) -> Path:
    """Build the site into `out` (default `_build/book/` in the repository); return it."""
    out = Path(out) if out else paths.repo_root() / DEFAULT_OUT
    notebooks = build_notebook_pages(out)
    solutions = build_solution_pages(out)
    build_results_page(out)
    build_index(out, notebooks, solutions)
    return out


def check_book(out: Path) -> list[str]:
    """Every problem of a built site: relative links and images that point at no file, and
    notebook pages with fewer figures than their notebook."""
    problems = []
    for page in sorted(out.rglob("*.html")):
        for _, _, link in LINK.findall(page.read_text()):
            if link and not re.match(r"^[a-z]+:", link):
                problems += _link_problem(out, page, link)
    for path in course.list_notebooks():
        page = out / "notebooks" / f"{path.stem}.html"
        expected = publishing.image_count(nbformat.read(path, as_version=4))
        found = len(DATA_IMAGE.findall(page.read_text())) if page.exists() else 0
        if found < expected:
            problems.append(f"{page.relative_to(out)}: {found} of {expected} figures")
    return problems


def _link_problem(out: Path, page: Path, link: str) -> list[str]:
    """[] when a relative link of `page` reaches a file of the site (and its `#anchor`)."""
    path, _, anchor = link.partition("#")
    target = page.parent / path if path else page
    if not target.exists():
        return [f"{page.relative_to(out)}: broken link {link}"]
    if anchor and target.suffix == ".html" and anchor not in {m[1] for m in ANCHOR_ID.findall(target.read_text())}:
        return [f"{page.relative_to(out)}: link {link} names no anchor of {target.name}"]
    return []


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of `python -m c3ae_utils.book`."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"site folder (default: {DEFAULT_OUT})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Build the site, check it, and print where it is (exit 1 naming every problem)."""
    out = build_book(build_parser().parse_args(argv).out)
    problems = check_book(out)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{'broken' if problems else 'built'}: {out / 'index.html'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(cli.run(main, prog="python -m c3ae_utils.book"))
