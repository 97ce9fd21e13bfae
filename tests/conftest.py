"""Shared fixtures: the real data mirror, one set of real face caches, and the notebook runner.

The data: the mirror `C3AE_DATA_MIRROR`, else `../shared/data` beside the clone, else the
course's own downloads (what `make run-all` fetched into `paths.download_dir()`): then a folder
of links to the downloaded files that are byte for byte mirror files stands in for the mirror,
and `datasets.fetch` extracts the official archives for the rest (`pytest_configure`). With
none of them, pytest stops at once with one line saying what to run first.

Under pytest-xdist (`make test`: two workers, `--dist loadfile`) each test module stays on
one worker, so module fixtures (a trained run, exported models) are made once; notebooks
01-04 (test_notebooks.py) and 05-07 (test_notebooks_training.py) run on the two workers at
once, each notebook after the ones it reads. The face caches are built once per test run, in
a folder every worker shares, behind a file lock.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import tempfile
from pathlib import Path

import jsonschema  # noqa: F401  (first: see below)
import pytest

# jsonschema builds rfc3987_syntax's Lark grammars on import (about 1 s). Imported later, by nbformat
# while pytest collects the test modules, the same work made CPython's allocator map and unmap an
# arena in a loop (385,504 munmap calls, 3.5-5 s more per xdist worker; bench/README.md).

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "data"

os.environ.setdefault("MPLBACKEND", "Agg")
if "C3AE_DATA_MIRROR" not in os.environ and DEFAULT_MIRROR.is_dir():
    os.environ["C3AE_DATA_MIRROR"] = str(DEFAULT_MIRROR)

CACHED_DATASETS = ("utkface", "fgnet")
TEST_DATASETS = ("utkface", "fgnet", "wiki", "reference", "demo")  # what the tests read (and make run-all fetches)
DATA_SOURCE = pytest.StashKey[str]()  # the header line naming where the data comes from
FIRST_FILE = "test_notebooks_training.py"  # the longest test file (see pytest_collection_modifyitems)


def pytest_configure(config: pytest.Config) -> None:
    """Without a mirror, let the course's downloads stand in for it; with nothing, one line.

    Costs nothing when a mirror is set (xdist workers inherit the controller's). Otherwise a
    temporary folder of links to the files this machine holds byte for byte (SHA-256 checked,
    `datasets.link_mirror`) becomes `C3AE_DATA_MIRROR` for this run; `fetch` takes the rest from
    the downloaded archives, checking their checksums. When none of `TEST_DATASETS` is extracted
    or downloaded, pytest.UsageError: one line (exit status 4) instead of an error per test.
    """
    if "C3AE_DATA_MIRROR" in os.environ or getattr(config.option, "help", False):
        return
    from c3ae_utils import datasets, paths

    held = [name for name in TEST_DATASETS if datasets.is_complete(name) or datasets.is_downloaded(name)]
    if not held:
        raise pytest.UsageError(_nothing_to_test_with())
    folder = Path(tempfile.mkdtemp(prefix="c3ae-mirror-of-downloads-"))
    config.add_cleanup(functools.partial(shutil.rmtree, folder, ignore_errors=True))
    config.add_cleanup(functools.partial(os.environ.pop, "C3AE_DATA_MIRROR", None))
    linked = datasets.link_mirror(folder)
    os.environ["C3AE_DATA_MIRROR"] = str(folder)
    missing = [name for name in TEST_DATASETS if name not in held]
    config.stash[DATA_SOURCE] = (
        f"data: no mirror; the downloads in {paths.download_dir()} stand in for it "
        f"({len(linked)} mirror files linked in {folder}); missing: {', '.join(missing) or 'none'}"
    )


def _nothing_to_test_with() -> str:
    """The one line of a clone with no data: what to run first and how much it downloads."""
    from c3ae_utils import datasets, paths

    specs = [datasets.get_spec(name) for name in TEST_DATASETS]
    total = sum(spec.size_estimate or 0 for spec in specs)
    unpublished = [spec.name for spec in specs if spec.size_estimate is None]
    uncounted = f", plus {' and '.join(unpublished)} (size not published)" if unpublished else ""
    return (
        f"The tests need data: no mirror (C3AE_DATA_MIRROR, or ../shared/data beside the clone) and "
        f"nothing downloaded in {paths.download_dir()}. Run `make run-all` first (or `make data "
        f"DATASET=NAME` for each of {', '.join(TEST_DATASETS)}): it downloads about "
        f"{total / 1e9:.1f} GB{uncounted}."
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Where the data comes from, when the course's downloads stand in for the mirror."""
    return [config.stash[DATA_SOURCE]] if DATA_SOURCE in config.stash else []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the shared face caches are slow: the first builds them (about 25 s on
    one core), and those tests train, fine-tune or run notebooks on them.

    The order is the schedule of `make test` (xdist `--dist loadfile --no-loadscope-reorder`
    hands out files in this order): notebooks 05-07 first (the longest file, about 3 minutes,
    whose worker builds the caches before them), then the files that need no cache (the other
    worker runs them meanwhile), then notebooks 01-04 and the other files that need a cache.
    """
    cached = [item for item in items if "face_caches" in getattr(item, "fixturenames", ())]
    for item in cached:
        item.add_marker(pytest.mark.slow)
    needs_cache = {item.path for item in cached}
    items.sort(key=lambda item: (item.path.name != FIRST_FILE, item.path in needs_cache,
                                 item.get_closest_marker("notebook") is None))


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


@pytest.fixture(scope="session")
def utkface_folder(mirror: Path) -> Path:
    """The extracted UTKFace images (`UTKFace/` of `datasets.fetch("utkface")`): the course
    mirror's 22,207 or the official release's 23,708 (`utkface_releases`), whichever this
    machine has; session-scoped, so it is fetched before any test moves the data folders."""
    from c3ae_utils import datasets

    return datasets.fetch("utkface", progress=False) / "UTKFace"


def _run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this test run that every xdist worker sees (their base temp's parent)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def face_caches(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small run's real face caches (`course.SMALL`) (UTKFace and FG-NET, `MAX_IMAGES` photos each,
    through MTCNN, alignment and crops), built once per test run (a finished cache is reused): the folder to use as
    `C3AE_CACHE_DIR`. The course notebooks read the same caches (notebook 02 finds them
    built: its tables are the same), so the detector runs on these photos once."""
    from c3ae_utils import course, datasets, faces

    count = course.SMALL.max_images
    folder = _run_folder(tmp_path_factory) / "face_caches"
    folder.mkdir(exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be building them right now
        tables = {}
        for dataset in CACHED_DATASETS:
            table = datasets.load_metadata(dataset)
            table["split"] = datasets.protocol_split(table, dataset, seed=0)
            tables[dataset] = datasets.subsample(table, count, seed=0)
        for dataset, table in tables.items():
            # In this process: the other worker runs the files that need no cache meanwhile
            # (a Dask cluster would take both cores, plus its workers' start-up).
            faces.build_cache(table, folder / faces.cache_name(dataset, count), progress=False, workers=1)
    return folder


@pytest.fixture(scope="session")
def utkface_cache(face_caches: Path):
    """The shared UTKFace `faces.FaceCache` (train, val and test rows)."""
    from c3ae_utils import course, faces

    return faces.load_cache(face_caches / faces.cache_name("utkface", course.SMALL.max_images))


@pytest.fixture(scope="session")
def fgnet_cache(face_caches: Path):
    """The shared FG-NET `faces.FaceCache` (every row "train": FG-NET is tested by LOSO folds)."""
    from c3ae_utils import course, faces

    return faces.load_cache(face_caches / faces.cache_name("fgnet", course.SMALL.max_images))


@pytest.fixture(scope="module")
def workspace(face_caches: Path, utkface_cache, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test module's private artifacts folder (`C3AE_ARTIFACTS_DIR`), with the shared face
    caches as `C3AE_CACHE_DIR`: where the training tests write their runs."""
    root = tmp_path_factory.mktemp("workspace")
    patch = pytest.MonkeyPatch()
    patch.setenv("C3AE_ARTIFACTS_DIR", str(root / "artifacts"))
    patch.setenv("C3AE_CACHE_DIR", str(face_caches))
    yield root
    patch.undo()


# The notebooks whose outputs a notebook reads (course.MissingInput names them); the face
# caches of notebook 02 come from the `face_caches` fixture, which notebook 02 finds built.
PREREQUISITES = {"02": ("01",), "03": ("01",), "06": ("05",), "07": ("05",)}


class CourseRun:
    """Runs course notebooks, once each per test session, in a private artifacts dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.executed: dict[str, Path] = {}

    def run(self, prefix: str) -> Path:
        """Execute notebook `prefix` after its prerequisites (each once); its executed copy."""
        from c3ae_utils import course

        for earlier in PREREQUISITES.get(prefix, ()):
            self.run(earlier)
        if prefix not in self.executed:
            self.executed[prefix] = course.run_notebook(course.find_notebook(prefix), small_run=True)
        return self.executed[prefix]


@pytest.fixture(scope="session")
def course_run(tmp_path_factory: pytest.TempPathFactory, face_caches: Path) -> CourseRun:
    """A session-wide small course run (SMALL_RUN = True) writing to temporary artifacts and figures,
    reading and writing face caches in the shared cache folder."""
    root = tmp_path_factory.mktemp("course")
    patch = pytest.MonkeyPatch()
    patch.setenv("C3AE_ARTIFACTS_DIR", str(root / "artifacts"))
    patch.setenv("C3AE_CACHE_DIR", str(face_caches))
    patch.setenv("C3AE_FIGURES_DIR", str(root / "figures"))
    yield CourseRun(root)
    patch.undo()
