"""Worked solutions to the course's exercises: one module per notebook, one function per exercise.

Each `exercise_<n>(small_run=True)` does what exercise n of its notebook asks, checks its own
answer with asserts, and returns what it measured (a dict). The tests run every solution with
`small_run=True` after the notebooks; a learner runs them from the repository root:

    python -m solutions.ex05_train_focal_vs_cross_entropy        # every exercise of notebook 05
    python -m solutions.ex05_train_focal_vs_cross_entropy 1 3    # exercises 1 and 3
    python -m solutions.ex05_train_focal_vs_cross_entropy --full # with SMALL_RUN = False

Like the notebook itself, a solution reads what the earlier notebooks made for the same
SMALL_RUN, and says which notebook to run first when that is missing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import c3ae_utils  # noqa: F401  (first, before any solution imports Keras: it quiets TensorFlow's start-up lines)

Solution = Callable[..., dict[str, Any]]


def modules() -> list[str]:
    """Names of the solution modules (`ex01_explore_the_data`, ...), in notebook order."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if re.match(r"ex\d\d_", info.name))


def exercises(module: ModuleType | str) -> dict[int, Solution]:
    """The `exercise_<n>` functions of a solution module, by exercise number."""
    if isinstance(module, str):
        module = importlib.import_module(f"{__name__}.{module}")
    found = {int(name.split("_")[1]): function for name, function in vars(module).items()
             if re.fullmatch(r"exercise_\d+", name) and callable(function)}
    return dict(sorted(found.items()))


def main(module: ModuleType, argv: list[str] | None = None) -> int:
    """Run some (default: all) exercises of `module` and print what each returned."""
    parser = argparse.ArgumentParser(prog=f"python -m {module.__name__}", description=(module.__doc__ or "").splitlines()[0])
    parser.add_argument("numbers", nargs="*", type=int, help="exercise numbers (default: all)")
    parser.add_argument("--full", action="store_true", help="SMALL_RUN = False (the full course's inputs)")
    args = parser.parse_args(argv)
    available = exercises(module)
    unknown = sorted(set(args.numbers) - set(available))
    if unknown:
        parser.error(f"no exercise {unknown}; this notebook has {sorted(available)}")
    for number in args.numbers or available:
        result = available[number](small_run=not args.full)
        print(f"exercise {number}: {json.dumps(result, indent=2, default=str)}")
    return 0
