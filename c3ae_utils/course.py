"""Run the course notebooks in order with papermill (`make run-all`, the notebook tests).

    python -m c3ae_utils.course --profile quick            # every notebook
    python -m c3ae_utils.course --profile quick --upto 03  # 01, 02 and 03

Executed copies go to `<artifacts>/notebooks/`; the committed notebooks stay clean.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import papermill

from c3ae_utils import cli, paths

logger = logging.getLogger(__name__)

# Papermill parameters of the two course profiles. "full" is every notebook's default;
# "quick" is what CI and `make run-all PROFILE=quick` use: the same code on a few hundred
# real images.
PROFILES: dict[str, dict[str, object]] = {
    "full": {"PROFILE": "full"},
    "quick": {
        "PROFILE": "quick",
        "MAX_IMAGES": 200,
        "EPOCHS": 10,  # notebook 05: enough steps (10 x 18) for its runs to beat predicting the mean age
        "BATCH_SIZE": 8,
        "NUM_FOLDS": 2,  # notebook 06: leave-one-subject-out folds
        "FINE_TUNE_EPOCHS": 2,
        "NUM_SEEDS": 1,
        "MAX_FRAMES": 60,  # notebook 07: video frames read from the demo clip
        "LATENCY_REPEATS": 10,  # notebook 07: timed calls per backend
    },
}


def profile_parameters(profile: str) -> dict[str, object]:
    """Papermill parameters for `profile` ("quick" or "full")."""
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}; choose one of {sorted(PROFILES)}.")
    return dict(PROFILES[profile])


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


def run_notebook(notebook: Path, profile: str = "quick", **overrides: object) -> Path:
    """Execute one notebook with the profile's parameters; return the executed copy's path."""
    parameters = profile_parameters(profile)
    parameters.update(overrides)
    output_dir = paths.ensure_dir(paths.artifacts_dir() / "notebooks")
    output = output_dir / notebook.name
    # Quieten TensorFlow's C++ start-up lines inside the executed notebooks.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters,
        cwd=str(notebook.parent),
        kernel_name="python3",
        progress_bar=False,
        log_output=False,
    )
    logger.info("%s ran in %.1f s", notebook.name, time.perf_counter() - started)
    return output


def run_all(profile: str = "quick", upto: str | None = None) -> list[Path]:
    """Execute every notebook in order (up to and including the prefix `upto`)."""
    executed = []
    for notebook in list_notebooks():
        print(f"[run-all] {notebook.name} (profile {profile})", flush=True)
        executed.append(run_notebook(notebook, profile))
        if upto is not None and notebook.name.startswith(upto):
            break
    return executed


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=sorted(PROFILES))
    parser.add_argument("--upto", default=None, help="stop after the notebook with this prefix")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_all(args.profile, args.upto)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, prog="python -m c3ae_utils.course"))
