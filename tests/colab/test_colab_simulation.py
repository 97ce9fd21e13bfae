"""Google Colab, played on this machine: notebooks 01 and 03 as a learner runs them from their badges.

Colab gives every notebook a new runtime: a Python with TensorFlow, Keras, OpenCV, pandas, ...
preinstalled, `google.colab` imported in the kernel, an empty /content, and Google Drive
mounted at /content/drive on request. Only Drive outlives the runtime. Here:

- the preinstalled stack is this test's own virtual environment, seen by a new, empty virtual
  environment (created outside the repository for each runtime) through a `.pth` file, so pip
  in the new runtime finds TensorFlow and friends installed, as on Colab;
- `google.colab` is a stand-in package (only `drive.mount`, which links /content/drive to a
  temporary "Drive" folder) that a `sitecustomize` imports in every process of the runtime;
- the internet is the data mirror (`C3AE_DATA_MIRROR`, the only C3AE_* variable the kernel
  gets) and the GitHub repository is a snapshot of this checkout: each notebook's setup cell
  runs its own `pip install` of it, inside the kernel, as on Colab.

Notebook 01 runs first; before notebook 03, the small face caches are put on Drive where
notebook 02 leaves them (an earlier runtime that ran notebook 02). Checked: both notebooks run
without an error, the install adds the course package and nothing else (no second TensorFlow,
Keras or OpenCV), the kernel imports that installed copy, and everything the notebooks keep
lands on Drive, not in the runtime's /content.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ("01_explore_the_data", "03_encode_ages")  # 03 reads 01's tables and 02's caches
CONTENT = Path("/content")  # Colab's working folder; Drive is mounted at /content/drive
DRIVE_MOUNT = CONTENT / "drive"
COURSE_HOME = "MyDrive/c3ae-course"  # the course's folder inside Drive (c3ae_utils.colab)
METADATA_TABLES = ("utkface", "fgnet", "wiki")  # what notebook 01 writes
CACHED_DATASETS = ("utkface", "fgnet")  # the face caches notebook 03 needs from notebook 02
# The installed package's default weights: the shipped model, loaded (signature checked) from its own copy.
SHIPPED_MODEL_CHECK = "from c3ae_utils import network; network.load_model(); print(network.resolve_weights(None))"
PREINSTALLED_ONLY = re.compile(r"^(tensorflow|tf_keras|keras|opencv)")  # Colab's own; never installed again
NOTEBOOK_TIMEOUT_S = 900  # a whole notebook, its install included
CELL_TIMEOUT_S = 600
SAVED = REPO / "artifacts" / "colab"  # the executed notebooks and the timings, for a look after CI
# Variables that would let the kernel see this test session rather than a Colab runtime.
HIDDEN_VARIABLES = re.compile(r"^(C3AE_|MPLBACKEND$|PYTHON(PATH|HOME|STARTUP)$|VIRTUAL_ENV$|JUPYTER_|IPYTHONDIR$|PYTEST_|TF_CPP_)")

# The stand-in `google.colab.drive`; {drive} and {log} are filled in.
DRIVE_MODULE = '''"""Stand-in for Colab's google.colab.drive (tests/colab): `mount` shows a local folder."""

import json
import os
import sys
from pathlib import Path

DRIVE = Path({drive!r})
LOG = Path({log!r})


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    """Make `mountpoint` show the stand-in Drive (a symbolic link), as Colab's mount does."""
    point = Path(mountpoint)
    package = sys.modules.get("c3ae_utils")
    with LOG.open("a") as log:
        log.write(json.dumps({{"mountpoint": str(point), "executable": sys.executable, "cwd": os.getcwd(),
                              "c3ae_utils": getattr(package, "__file__", None)}}) + "\\n")
    if point.is_symlink() and point.resolve() == DRIVE.resolve() and not force_remount:
        print(f"Drive already mounted at {{mountpoint}}; to attempt to forcibly remount, call "
              f'drive.mount("{{mountpoint}}", force_remount=True).')
        return
    if point.is_symlink():
        point.unlink()
    elif point.exists():
        if not point.is_dir() or any(point.iterdir()):
            raise ValueError("Mountpoint must not already contain files")
        point.rmdir()
    point.parent.mkdir(parents=True, exist_ok=True)
    point.symlink_to(DRIVE, target_is_directory=True)
    print(f"Mounted at {{mountpoint}}")
'''
SITECUSTOMIZE = '''"""Colab's kernels run with google.colab imported (tests/colab stand-in)."""

import google.colab  # noqa: F401
'''
# What a new runtime sees before the install: the stand-ins, the preinstalled stack, no course package.
PROBE = """import importlib.util, json, sys, sysconfig
print(json.dumps({
    "purelib": sysconfig.get_paths()["purelib"],
    "colab_imported": "google.colab" in sys.modules,
    "sitecustomize": getattr(sys.modules.get("sitecustomize"), "__file__", None),
    "tensorflow": getattr(importlib.util.find_spec("tensorflow"), "origin", None),
    "c3ae_utils": getattr(importlib.util.find_spec("c3ae_utils"), "origin", None),
}))"""


@dataclass
class Timings:
    """Seconds per step of the simulation: printed, and saved to artifacts/colab/timings.txt."""

    steps: list[tuple[str, float, bool]] = field(default_factory=list)  # label, seconds, counted in the total

    def add(self, label: str, seconds: float, counted: bool = True) -> None:
        """Record a step (`counted=False`: a part of another step, left out of the total)."""
        self.steps.append((label, seconds, counted))

    def run(self, label: str, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """`subprocess.run(command)` (text, output captured unless redirected), timed as `label`."""
        started = time.monotonic()
        kwargs.setdefault("capture_output", "stdout" not in kwargs)
        result = subprocess.run(command, text=True, **kwargs)
        self.add(label, time.monotonic() - started)
        return result

    def report(self) -> str:
        """One line per step and the total."""
        lines = [f"  {label:<52s} {seconds:7.1f} s" for label, seconds, _ in self.steps]
        total = sum(seconds for _, seconds, counted in self.steps if counted)
        return "\n".join([*lines, f"  {'total':<52s} {total:7.1f} s"])


@dataclass(frozen=True)
class Colab:
    """What outlives every runtime: Drive, the stand-ins, the 'GitHub' snapshot and the preinstalled stack."""

    root: Path
    drive: Path  # the stand-in Google Drive: MyDrive/ inside
    standins: Path  # google/colab/ and sitecustomize.py
    mount_log: Path  # one JSON line per drive.mount call
    source: Path  # the checkout as pip installs it (the "GitHub repository")
    preinstalled: tuple[Path, ...]  # this virtual environment's site-packages: Colab's stack
    content_before: frozenset[str]  # what /content held before the simulation
    timings: Timings

    @property
    def home(self) -> Path:
        """The course's folder on Drive."""
        return self.drive / COURSE_HOME

    def mounts(self) -> list[dict[str, Any]]:
        """Every drive.mount call so far."""
        if not self.mount_log.exists():
            return []
        return [json.loads(line) for line in self.mount_log.read_text().splitlines()]


@dataclass(frozen=True)
class Runtime:
    """One new Colab runtime: a new virtual environment and an empty working folder."""

    venv: Path
    content: Path  # the notebook's working folder (Colab's /content)
    site_packages: Path
    environment: dict[str, str]  # the kernel's environment variables

    @property
    def python(self) -> Path:
        """The runtime's interpreter (the kernel's)."""
        return self.venv / "bin" / "python"


def _dist_names(site_packages: Path) -> set[str]:
    """The normalized names of the distributions installed in `site_packages`."""
    return {re.sub(r"[-_.]+", "_", path.name.split("-")[0]).lower() for path in site_packages.glob("*.dist-info")}


def _repository_url() -> str:
    """The course's repository, as pyproject.toml names it (the setup cells install from it)."""
    found = re.search(r'^Repository\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert found, "pyproject.toml names no Repository in [project.urls]"
    return found.group(1)


def _snapshot_checkout(target: Path) -> Path:
    """Copy the files git sees in the checkout (tracked or new, not ignored) to `target`.

    pip builds a local folder in place, leaving build/ behind (and reusing a stale one), so it
    installs this copy: what a clone of the pushed checkout would hold.
    """
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the checkout is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _write_standins(folder: Path, drive: Path, log: Path) -> None:
    """`google.colab` (a namespace `google`, as protobuf's) with `drive`, and a `sitecustomize` importing it."""
    package = folder / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Stand-in for Google Colab\'s google.colab (tests/colab)."""\n')
    (package / "drive.py").write_text(DRIVE_MODULE.format(drive=str(drive), log=str(log)))
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)


@contextmanager
def _content_folder() -> Iterator[frozenset[str]]:
    """/content, where the setup cells mount Drive, made if missing (CI runs as root); yields what
    it held before. Afterwards only what the simulation made there is removed."""
    made = not CONTENT.exists()
    if made:
        try:
            CONTENT.mkdir()
        except PermissionError:
            pytest.fail(f"The Colab simulation needs {CONTENT} (Drive is mounted at {DRIVE_MOUNT}): run it as root, "
                        f"or create the folder first: sudo mkdir -m 777 {CONTENT}", pytrace=False)
    if DRIVE_MOUNT.is_symlink() and not DRIVE_MOUNT.exists():
        DRIVE_MOUNT.unlink()  # left by a killed earlier run: it points at a removed temporary folder
    if os.path.lexists(DRIVE_MOUNT):
        pytest.fail(f"{DRIVE_MOUNT} exists already; the simulation mounts its own Drive there.", pytrace=False)
    found = frozenset(os.listdir(CONTENT))
    try:
        yield found
    finally:
        if made:
            shutil.rmtree(CONTENT)
        else:
            for name in set(os.listdir(CONTENT)) - found:
                path = CONTENT / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()


@pytest.fixture(scope="module")
def colab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Colab]:
    """The parts of Colab that outlive runtimes. At the end: the timings of the whole simulation,
    and a check that the runtimes left the preinstalled stack (this virtual environment) as it was."""
    root = tmp_path_factory.mktemp("colab")
    (root / "drive" / "MyDrive").mkdir(parents=True)
    paths = sysconfig.get_paths()
    preinstalled = tuple(dict.fromkeys(Path(paths[key]) for key in ("purelib", "platlib")))
    before = {folder: sorted(os.listdir(folder)) for folder in preinstalled}
    timings = Timings()
    with _content_folder() as content_before:
        started = time.monotonic()
        source = _snapshot_checkout(root / "github")
        timings.add("snapshot of the checkout", time.monotonic() - started)
        machine = Colab(root=root, drive=root / "drive", standins=root / "standins", mount_log=root / "mounts.jsonl",
                        source=source, preinstalled=preinstalled, content_before=content_before, timings=timings)
        _write_standins(machine.standins, machine.drive, machine.mount_log)
        yield machine
    report = f"Colab simulation timings:\n{timings.report()}"
    print(f"\n{report}")
    SAVED.mkdir(parents=True, exist_ok=True)
    (SAVED / "timings.txt").write_text(report + "\n")
    for folder, names in before.items():
        assert sorted(os.listdir(folder)) == names, f"the runtimes changed the preinstalled stack in {folder}"


def _new_runtime(colab: Colab, name: str, mirror: Path) -> Runtime:
    """A new runtime: an empty virtual environment (this interpreter's base Python) that sees the
    preinstalled stack and the stand-ins through `.pth` files, with a `python3` kernel of its own."""
    folder = colab.root / name
    venv = folder / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    created = colab.timings.run(f"{name}: new virtual environment", [base, "-m", "venv", "--without-pip", str(venv)])
    assert created.returncode == 0, created.stderr
    site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    assert site_packages.is_dir(), f"no {site_packages} in the new virtual environment"
    (site_packages / "colab-preinstalled.pth").write_text("".join(f"{path}\n" for path in colab.preinstalled))
    (site_packages / "colab-standins.pth").write_text(f"{colab.standins}\n")
    kernel = venv / "share" / "jupyter" / "kernels" / "python3"  # Colab's one kernel, on this runtime's Python
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    (folder / "content").mkdir()
    runtime = Runtime(venv=venv, content=folder / "content", site_packages=site_packages,
                      environment=_environment(venv, mirror))

    probe = json.loads(subprocess.run([runtime.python, "-c", PROBE], capture_output=True, text=True, check=True,
                                      cwd=runtime.content, env=runtime.environment).stdout)
    assert Path(probe["purelib"]) == site_packages, probe
    assert probe["colab_imported"], f"google.colab is not imported at start-up (sitecustomize: {probe['sitecustomize']})"
    assert probe["tensorflow"] and Path(probe["tensorflow"]).is_relative_to(colab.preinstalled[0]), probe
    assert probe["c3ae_utils"] is None, f"the new runtime finds the course package before installing it: {probe}"
    return runtime


def _environment(venv: Path, mirror: Path) -> dict[str, str]:
    """The environment variables of the runtime of `venv`: none of this session's C3AE_*,
    Jupyter or Python settings but the data mirror (the internet); private Jupyter and IPython folders."""
    environment = {key: value for key, value in os.environ.items() if not HIDDEN_VARIABLES.match(key)}
    this_venv = str(Path(sys.prefix) / "bin")
    path = [entry for entry in environment.get("PATH", "").split(os.pathsep) if entry and entry != this_venv]
    settings = venv.parent / "settings"
    environment.update(
        PATH=os.pathsep.join([str(venv / "bin"), *path]),
        C3AE_DATA_MIRROR=str(mirror),
        JUPYTER_CONFIG_DIR=str(settings / "jupyter-config"),
        JUPYTER_DATA_DIR=str(settings / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(settings / "jupyter-runtime"),
        IPYTHONDIR=str(settings / "ipython"),
    )
    return environment


def _notebook_for_runtime(colab: Colab, stem: str, target: Path) -> Path:
    """A copy of notebook `stem` whose setup cell installs the checkout's snapshot instead of GitHub."""
    notebook = json.loads((REPO / "notebooks" / f"{stem}.ipynb").read_text())
    setup = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    source = "".join(setup["source"])
    github = f'"c3ae-course @ git+{_repository_url()}"'
    assert source.count(github) == 1, f"{stem}: the setup cell does not install {github}:\n{source}"
    setup["source"] = source.replace(github, f'"c3ae-course @ {colab.source.as_uri()}"')
    target.write_text(json.dumps(notebook, indent=1))
    return target


def _errors(notebook: Path) -> list[str]:
    """Every error output of an executed notebook, as "code cell N: Name: value"."""
    if not notebook.exists():
        return ["the executed notebook was not written"]
    cells = [cell for cell in json.loads(notebook.read_text())["cells"] if cell["cell_type"] == "code"]
    return [f"code cell {index}: {output.get('ename')}: {output.get('evalue')}"
            for index, cell in enumerate(cells) for output in cell.get("outputs", []) if output["output_type"] == "error"]


def _run_notebook(colab: Colab, runtime: Runtime, stem: str) -> Path:
    """Run notebook `stem` in `runtime`, all of it, with SMALL_RUN = True (papermill on the
    runtime's kernel, in its working folder); return the executed notebook. The kernel must
    mount Drive once and import the course package from its own install."""
    folder = runtime.venv.parent
    notebook = _notebook_for_runtime(colab, stem, folder / f"{stem}.ipynb")
    executed, log = folder / f"{stem}.executed.ipynb", folder / "papermill.log"
    mounts = len(colab.mounts())
    with log.open("w") as output:
        try:
            result = colab.timings.run(
                f"{stem[:2]}: notebook, its pip install included",
                [str(runtime.python), "-m", "papermill", str(notebook), str(executed), "-p", "SMALL_RUN", "True",
                 "-k", "python3", "--cwd", str(runtime.content), "--execution-timeout", str(CELL_TIMEOUT_S),
                 "--log-output", "--no-progress-bar"],
                stdout=output, stderr=subprocess.STDOUT, env=runtime.environment, cwd=runtime.content,
                timeout=NOTEBOOK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            result = None
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    if executed.exists():
        SAVED.mkdir(parents=True, exist_ok=True)
        shutil.copy(executed, SAVED / f"{stem}.ipynb")
    assert result is not None, f"{stem} still running after {NOTEBOOK_TIMEOUT_S} s in its Colab runtime:\n{tail}"
    assert result.returncode == 0 and not _errors(executed), \
        f"{stem} failed in its Colab runtime (exit {result.returncode}): {_errors(executed)}\n{tail}"
    setup = next(cell for cell in json.loads(executed.read_text())["cells"] if cell["cell_type"] == "code")
    printed = "".join("".join(output.get("text", "")) for output in setup.get("outputs", []))
    assert "Warning" not in printed and "deprecated" not in printed, f"{stem}: the setup cell warns:\n{printed[:2000]}"
    colab.timings.add(f"{stem[:2]}:   of which the setup cell (pip install, Drive)",
                      setup["metadata"]["papermill"]["duration"], counted=False)

    calls = colab.mounts()[mounts:]
    assert [call["mountpoint"] for call in calls] == [str(DRIVE_MOUNT)], f"{stem}: drive.mount calls {calls}"
    assert Path(calls[0]["executable"]) == runtime.python, f"{stem}: the kernel ran {calls[0]['executable']}"
    assert Path(calls[0]["cwd"]) == runtime.content, f"{stem}: the kernel ran in {calls[0]['cwd']}"
    package = calls[0]["c3ae_utils"]
    assert package and Path(package).is_relative_to(runtime.site_packages), \
        f"{stem}: the kernel imported c3ae_utils from {package}, not from the runtime's own install"
    return executed


def _check_runtime(colab: Colab, runtime: Runtime, stem: str) -> None:
    """After the notebook: its install added the course package and nothing else (no second
    TensorFlow, Keras or OpenCV), /content holds only the Drive mount, and the working folder,
    lost with the runtime, holds nothing."""
    installed = _dist_names(runtime.site_packages)
    again = sorted(name for name in installed if PREINSTALLED_ONLY.match(name))
    assert not again, f"{stem}: the install put {again} next to Colab's own, in {runtime.site_packages}"
    assert installed == {"c3ae_course"}, f"{stem}: the install added {sorted(installed)}, not only c3ae-course"
    assert (runtime.site_packages / "c3ae_utils" / "colab.py").is_file()
    # Colab's OpenCV may be another distribution (opencv-python) than this machine's, which pip
    # would not count: the package must not require any OpenCV.
    metadata = next(runtime.site_packages.glob("c3ae_course-*.dist-info")) / "METADATA"
    required = [line.split(":", 1)[1].strip() for line in metadata.read_text().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    opencv = [requirement for requirement in required if requirement.lower().startswith("opencv")]
    assert not opencv, f"{stem}: the package requires {opencv}; Colab has its own OpenCV"
    written = set(os.listdir(CONTENT)) - colab.content_before - {"drive"}
    assert not written, f"{stem} wrote {sorted(written)} to {CONTENT} (lost with the runtime), not to Drive"
    assert not any(runtime.content.iterdir()), \
        f"{stem} wrote {sorted(os.listdir(runtime.content))} to its working folder (lost with the runtime)"


def _end_runtime() -> None:
    """The runtime ends and Drive is unmounted; its disk (virtual environment, working folder) is not used again."""
    if DRIVE_MOUNT.is_symlink():
        DRIVE_MOUNT.unlink()


def test_notebooks_01_and_03_in_new_colab_runtimes(colab: Colab, mirror: Path, face_caches: Path) -> None:
    """Notebook 01, then notebook 03 with notebook 02's caches on Drive, each in a new runtime
    whose setup cell installs the course."""
    from c3ae_utils import course, faces  # this checkout's package: the names of the small caches

    runtime = _new_runtime(colab, NOTEBOOKS[0][:2], mirror)
    listing = colab.timings.run("01: pip list", [str(runtime.python), "-m", "pip", "list", "--format=json"],
                                env=runtime.environment, cwd=runtime.content)
    assert listing.returncode == 0, listing.stderr
    names = {entry["name"].lower() for entry in json.loads(listing.stdout)}
    assert {"tensorflow", "keras", "pandas", "papermill"} <= names, f"pip does not see the preinstalled stack: {names}"
    _run_notebook(colab, runtime, NOTEBOOKS[0])
    _check_runtime(colab, runtime, NOTEBOOKS[0])
    for name in METADATA_TABLES:
        table = colab.home / "artifacts" / "metadata" / f"{name}.parquet"
        assert table.is_file(), f"notebook 01 did not write {table} on Drive"
    _end_runtime()

    small = course.SMALL.max_images
    for dataset in CACHED_DATASETS:  # an earlier runtime ran notebook 02
        name = faces.cache_name(dataset, small)
        shutil.copytree(face_caches / name, colab.home / "data" / "cache" / name)
    runtime = _new_runtime(colab, NOTEBOOKS[1][:2], mirror)
    _run_notebook(colab, runtime, NOTEBOOKS[1])
    _check_runtime(colab, runtime, NOTEBOOKS[1])
    metrics = json.loads((colab.home / "artifacts" / "metrics" / "encoding_check.json").read_text())
    assert metrics["cache"] == faces.cache_name("utkface", small), f"notebook 03 did not use the cache on Drive: {metrics}"
    shipped = colab.timings.run("03: shipped model", [str(runtime.python), "-c", SHIPPED_MODEL_CHECK],
                                env=runtime.environment, cwd=runtime.content)
    assert shipped.returncode == 0, shipped.stderr[-2000:]
    installed = Path(shipped.stdout.strip().splitlines()[-1])  # the default weights come with the install
    assert installed.name == "c3ae_utkface.keras" and installed.is_file() and REPO not in installed.parents, installed
    _end_runtime()
    shutil.rmtree(colab.home / "data" / "raw")  # 220 MB of photos; pytest keeps the last three runs' folders
