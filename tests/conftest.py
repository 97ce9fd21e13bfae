"""Shared fixtures: the real data mirror and the in-order notebook runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
if "C3AE_DATA_MIRROR" not in os.environ and DEFAULT_MIRROR.is_dir():
    os.environ["C3AE_DATA_MIRROR"] = str(DEFAULT_MIRROR)


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The real data mirror (`C3AE_DATA_MIRROR`); tests that need data fail loudly without it."""
    value = os.environ.get("C3AE_DATA_MIRROR")
    if not value or not Path(value).is_dir():
        pytest.fail(
            "These tests need the real data mirror: set C3AE_DATA_MIRROR to a folder laid out "
            f"like shared/data (got {value!r}).",
            pytrace=False,
        )
    return Path(value)


class CourseRun:
    """Runs the course notebooks in order, once each per test session, in a private artifacts dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.executed: dict[str, Path] = {}

    def run(self, prefix: str) -> Path:
        """Execute every notebook up to `prefix` (once) and return the executed copy of `prefix`."""
        from c3ae_utils import course

        for notebook in course.list_notebooks():
            key = notebook.name[:2]
            if key not in self.executed:
                self.executed[key] = course.run_notebook(notebook, profile="quick")
            if key == prefix:
                return self.executed[key]
        raise ValueError(f"No notebook with prefix {prefix!r}.")


@pytest.fixture(scope="session")
def course_run(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> CourseRun:
    """A session-wide quick-profile course run writing to temporary artifacts, cache and figures."""
    root = tmp_path_factory.mktemp("course")
    patch = pytest.MonkeyPatch()
    patch.setenv("C3AE_ARTIFACTS_DIR", str(root / "artifacts"))
    patch.setenv("C3AE_CACHE_DIR", str(root / "cache"))
    patch.setenv("C3AE_FIGURES_DIR", str(root / "figures"))
    yield CourseRun(root)
    patch.undo()
