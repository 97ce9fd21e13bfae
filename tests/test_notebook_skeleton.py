"""Every committed notebook follows the course skeleton and carries no outputs."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

import solutions
from c3ae_utils import course

NOTEBOOKS = course.list_notebooks()
REQUIRED_H2 = ["## Overview", "## Setup", "## Parameters", "## Summary", "## Exercises"]


def _cells(path):
    return json.loads(path.read_text())["cells"]


# Outputs are committed only from a full run through `make publish`: tests/test_published_notebooks.py.


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_follows_skeleton(path):
    cells = _cells(path)
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    titles = re.findall(r"^# .+", markdown, flags=re.MULTILINE)
    assert len(titles) == 1, f"{path.name} needs exactly one H1, found {titles}"
    assert "colab.research.google.com" in markdown, f"{path.name} lacks the Open in Colab badge"
    positions = [markdown.find(heading) for heading in REQUIRED_H2]
    assert all(p >= 0 for p in positions), f"{path.name} misses one of {REQUIRED_H2}"
    assert positions == sorted(positions), f"{path.name}: sections out of order"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code" and c is not tagged[0])
    # One size switch, first in the cell, off by default (the full course), and really read.
    assert source.startswith("SMALL_RUN = False  # True: "), f"{path.name}: the parameters cell must start with SMALL_RUN"
    small, full = course.NOTEBOOK_MINUTES[path.name[:2]]  # what MissingInput tells a learner
    assert f"(about {small:g} min on a 2-core CPU)" in source and f"(about {full:g} min)" in source, path.name
    assert re.search(r"course\.\w+\([^)]*\bSMALL_RUN\b", code), f"{path.name} never passes SMALL_RUN to the course"
    assert not re.search(r"(?<![\"'])\b(PROFILE|MAX_IMAGES)\b(?![\"'])", source + code), f"{path.name}: a size set outside SMALL_RUN"
    for line in source.splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.match(r"^[A-Z][A-Z0-9_]* = ", line), f"{path.name}: not an UPPER_CASE constant: {line}"


def _exercise_count(path) -> int:
    """The numbered items of the notebook's "## Exercises" list."""
    text = next("".join(c["source"]) for c in _cells(path) if "## Exercises" in "".join(c["source"]))
    return len(re.findall(r"^\d+\. ", text.split("## Exercises", 1)[1], flags=re.MULTILINE))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_has_a_worked_solution(path):
    module = f"ex{path.stem}"  # solutions/ex05_train_focal_vs_cross_entropy.py for notebook 05
    assert module in solutions.modules(), f"no solutions/{module}.py"
    assert list(solutions.exercises(module)) == list(range(1, _exercise_count(path) + 1)), module


REPO = Path(__file__).resolve().parents[1]


def _repository_url() -> str:
    """pyproject.toml's `[project.urls] Repository`: the one place the repository URL is written."""
    return re.search(r'^Repository = "(https://github\.com/[^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)[1]


def _colab_badge(url: str, notebook: str) -> str:
    return f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/main/notebooks/{notebook}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_colab_badge_and_install_line_use_the_repository_url(path):
    url = _repository_url()
    cells = _cells(path)
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert _colab_badge(url, path.name) in markdown, f"{path.name}: the badge does not open this notebook"
    setup = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    assert f'"c3ae-course @ git+{url}"], check=True)' in setup, f"{path.name}: the Colab install line"
    assert "colab.setup()" in setup and "[dev]" not in setup


def test_the_repository_url_is_written_only_where_it_is_checked():
    url = _repository_url()
    readme = (REPO / "README.md").read_text()
    for path in NOTEBOOKS:
        assert _colab_badge(url, path.name) in readme, f"README: no badge for {path.name}"
    found = subprocess.run(["git", "grep", "-l", "-F", url.removeprefix("https://")], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    checked = {"pyproject.toml", "README.md", *(f"notebooks/{path.name}" for path in NOTEBOOKS)}
    assert set(found) <= checked, set(found) - checked


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_document_a_notebook_cites_exists(path):
    cited = set(re.findall(r"[\w./-]*\w\.md\b", path.read_text()))
    generated = {name for name in cited if name.startswith("artifacts/")}  # written by the course, git-ignored
    missing = sorted(name for name in cited - generated if not (REPO / name).is_file())
    assert not missing, f"{path.name} cites {missing}, which the repository does not have"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_record_call_is_one_explained_cell(path):
    """`course.record` (what the course's checks read) is plumbing: at most one call, alone in
    its cell, after a markdown cell that names the file it writes."""
    cells = _cells(path)
    calls = [index for index, cell in enumerate(cells) if "course.record(" in "".join(cell["source"])]
    assert len(calls) <= 1, f"{path.name}: course.record in {len(calls)} cells"
    for index in calls:
        source = "".join(cells[index]["source"])
        assert source.startswith("course.record(") and source.count("course.record(") == 1, path.name
        assert len(ast.parse(source).body) == 1, f"{path.name}: the course.record cell does something else too"
        name = re.match(r'course\.record\("(\w+)"', source)[1]
        explanation = cells[index - 1]
        assert explanation["cell_type"] == "markdown", path.name
        assert f"artifacts/metrics/{name}.json" in "".join(explanation["source"]), f"{path.name}: say what course.record writes"
