"""The course's one size switch, what each notebook reads from the earlier ones, and the runner.

Every notebook has `SMALL_RUN = False` in its parameters cell. `course.size(SMALL_RUN)` gives
that run's sizes (images per dataset, epochs, folds, ...), so notebook 02 caches the faces that
03-07 then find by the same switch, and notebook 05 trains the runs that 06 and 07 find:

    size = course.size(SMALL_RUN)
    cache = course.face_cache("utkface", SMALL_RUN)          # or one line: run notebook 02 first
    run = course.trained_run("focal", SMALL_RUN)             # or one line: run notebook 05 first

From a terminal, every notebook in order (executed copies go to `<artifacts>/notebooks/`):

    python -m c3ae_utils.course --small            # SMALL_RUN = True in every notebook
    python -m c3ae_utils.course --small --upto 03  # 01, 02 and 03
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import zmq
from jupyter_client import KernelManager
from traitlets.config import Config

from c3ae_utils import cli, datasets, faces, paths

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Size:
    """The sizes of one course run; `size(small_run)` picks one of the two."""

    small_run: bool
    max_images: int | None  # 02-07: images per dataset in the face caches (None: all)
    epochs: int  # 05: training epochs per run (the cosine schedule decays over all of them)
    batch_size: int  # 05: faces per training step
    fine_tune_epochs: int  # 06: fine-tuning epochs per leave-one-subject-out fold
    fine_tune_batch_size: int  # 06: faces per fine-tuning step
    num_folds: int | None  # 06: leave-one-subject-out folds (None: one per FG-NET subject, 82)
    max_frames: int | None  # 07: video frames read from the demo clip (None: all)
    parity_faces: int  # 07: real faces for the export parity check
    latency_repeats: int  # 07: timed calls per backend
    benchmark_batch_size: int  # 07: faces per call of the throughput measurement

    @property
    def label(self) -> str:
        """How the notebooks name this size in their messages."""
        return f"SMALL_RUN = {self.small_run}"


SMALL = Size(small_run=True, max_images=200, epochs=10, batch_size=8, fine_tune_epochs=2,
             fine_tune_batch_size=32, num_folds=2, max_frames=60, parity_faces=200, latency_repeats=3,
             benchmark_batch_size=64)
FULL = Size(small_run=False, max_images=None, epochs=20, batch_size=32, fine_tune_epochs=5,
            fine_tune_batch_size=32, num_folds=None, max_frames=None, parity_faces=1000, latency_repeats=100,
            benchmark_batch_size=256)

# About how long each notebook takes on a 2-core CPU (minutes; small run, full run): the small
# runs measured with `python -m c3ae_utils.course --small` (face caches built), the full runs from one timed
# `make run-all` (docs/results.md, Time of the course run). Each notebook's SMALL_RUN comment says the same.
NOTEBOOK_MINUTES: dict[str, tuple[float, float]] = {
    "01": (0.5, 0.5),
    "02": (1, 4.5),
    "03": (0.5, 0.5),
    "04": (0.5, 1),
    "05": (1.5, 54),
    "06": (1, 35),
    "07": (1, 1.5),
}

# Notebook 05 compares these distribution losses; 06 and 07 read its runs.
COURSE_LOSSES = ("focal", "ce")


def size(small_run: bool) -> Size:
    """The sizes of a small run (`True`: minutes on a laptop CPU) or of the full course."""
    if not isinstance(small_run, bool):
        raise TypeError(f"SMALL_RUN must be True or False; got {small_run!r}.")
    return SMALL if small_run else FULL


class MissingInput(FileNotFoundError):
    """A notebook's input is missing: says which notebook makes it, in one line."""

    def __init__(self, what: str, notebook: str, small_run: bool | None):
        small, full = NOTEBOOK_MINUTES[notebook]
        setting = "" if small_run is None else f" with SMALL_RUN = {small_run}"
        minutes = small if small_run else full
        super().__init__(f"{what} is missing: run notebook {notebook} first{setting} (about {minutes:g} min on a 2-core CPU).")

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def metadata_table(dataset: str) -> pd.DataFrame:
    """Notebook 01's metadata table of `dataset`, or `MissingInput` naming notebook 01."""
    if not paths.metadata_path(dataset).is_file():
        raise MissingInput(f"The {dataset} metadata table ({paths.metadata_path(dataset)})", "01", None)
    return datasets.read_metadata_table(dataset)


def cache_name(dataset: str, small_run: bool) -> str:
    """The face cache notebook 02 builds for `dataset` at this size."""
    return faces.cache_name(dataset, size(small_run).max_images)


def face_cache(dataset: str, small_run: bool) -> faces.FaceCache:
    """Notebook 02's face cache of `dataset` at this size, or `MissingInput` naming notebook 02."""
    name = cache_name(dataset, small_run)
    if not faces.is_finished(name):
        raise MissingInput(f"The face cache {name!r} ({dataset})", "02", small_run)
    return faces.load_cache(name)


def train_config(loss: str, small_run: bool, dataset: str = "utkface", **settings: Any):  # noqa: ANN201
    """The `TrainConfig` of notebook 05's run with `loss` at this size (other `settings` too).

    Its run name is derived from its settings (`training.default_run_name`), so 06 and 07 find
    the run 05 trained, and a run with any setting changed gets a folder of its own.
    """
    from c3ae_utils import training  # loads TensorFlow: `import c3ae_utils.course` stays without it

    chosen = size(small_run)
    values: dict[str, Any] = dict(dataset=dataset, max_images=chosen.max_images, loss=loss, epochs=chosen.epochs,
                                  batch_size=chosen.batch_size, patience=0, resume=True)
    values.update(settings)
    return training.TrainConfig(**values).resolved()


def trained_run(loss: str, small_run: bool, dataset: str = "utkface", **settings: Any):  # noqa: ANN201
    """Notebook 05's finished run with `loss` at this size, or `MissingInput` naming notebook 05."""
    from c3ae_utils import training  # loads TensorFlow: `import c3ae_utils.course` stays without it

    config = train_config(loss, small_run, dataset, **settings)
    folder = training.run_dir(config.run_name)
    if not (folder / "metrics.json").is_file():
        raise MissingInput(f"The {loss} training run {config.run_name!r}", "05", small_run)
    return training.load_run(folder)


def record(notebook: str, **values: Any) -> Path:
    """Save what a notebook measured to `paths.metrics_path(notebook)` (the tests and README read
    it); NaN is refused (ValueError)."""
    paths.ensure_dir(paths.metrics_path(notebook).parent)
    return paths.write_json(paths.metrics_path(notebook), values, allow_nan=False)


def recorded(notebook: str) -> dict[str, Any]:
    """What `record(notebook, ...)` saved."""
    return json.loads(paths.metrics_path(notebook).read_text())


# --------------------------------------------------------------------------------------
# Running the notebooks
# --------------------------------------------------------------------------------------


def notebooks_dir() -> Path:
    """The folder of the committed course notebooks."""
    return paths.repo_root() / "notebooks"


def list_notebooks() -> list[Path]:
    """Course notebooks `NN_*.ipynb`, in order."""
    found = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"No notebooks found in {notebooks_dir()}.")
    return found


def find_notebook(prefix: str) -> Path:
    """The notebook whose name starts with `prefix` (e.g. "02")."""
    matches = [path for path in list_notebooks() if path.name.startswith(prefix)]
    if len(matches) != 1:
        raise ValueError(f"Expected one notebook starting with {prefix!r}, found {matches}.")
    return matches[0]


def kernel_manager_config() -> Any:
    """A traitlets `Config` for papermill's kernels (`execute_notebook(..., config=...)`):
    CurveZMQ-encrypted sockets where pyzmq has CurveZMQ and jupyter_client can provision its
    keys (`KernelManager.transport_encryption`, jupyter_client 8.10+); an empty `Config`
    otherwise (the kernel then runs, and warns, as before).

    "auto" encrypts only kernels whose kernelspec declares CurveZMQ support (ipykernel 7's
    does), so an older kernel still starts.
    """
    if zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names():
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    return Config()


def run_notebook(notebook: Path, small_run: bool = True, **parameters: object) -> Path:
    """Execute one notebook with `SMALL_RUN = small_run` (and any other `parameters`); return the executed copy."""
    import papermill

    output = paths.ensure_dir(paths.artifacts_dir() / "notebooks") / notebook.name
    started = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters={"SMALL_RUN": small_run, **parameters},
        cwd=str(notebook.parent),
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
        config=kernel_manager_config(),  # encrypted kernel sockets: no "without encryption" warning per notebook
    )
    logger.info("%s ran in %.1f s", notebook.name, time.perf_counter() - started)
    return output


def run_all(small_run: bool = False, upto: str | None = None) -> list[Path]:
    """Execute every notebook in order (up to and including the prefix `upto`)."""
    executed = []
    for notebook in list_notebooks():
        print(f"[run-all] {notebook.name} (SMALL_RUN = {small_run})", flush=True)
        executed.append(run_notebook(notebook, small_run))
        if upto is not None and notebook.name.startswith(upto):
            break
    return executed


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="SMALL_RUN = True in every notebook (minutes, not hours)")
    parser.add_argument("--upto", default=None, help="stop after the notebook with this prefix")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_all(args.small, args.upto)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, prog="python -m c3ae_utils.course"))
