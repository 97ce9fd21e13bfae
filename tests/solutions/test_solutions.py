"""Every worked solution (solutions/) runs with SMALL_RUN = True on what the notebooks made.

`make test-course` runs these (with the browser test): they train and export, so they stay
out of `make test`. The course notebooks run first, once, with SMALL_RUN = True
(`course_run`), exactly as a learner runs them before doing the exercises.
"""

from __future__ import annotations

import json

import pytest

import solutions

pytestmark = pytest.mark.slow
SOLVED = [(module, number) for module in solutions.modules() for number in solutions.exercises(module)]


@pytest.mark.parametrize(("module", "number"), SOLVED, ids=[f"{module[:4]}-{number}" for module, number in SOLVED])
def test_the_solution_runs_with_small_run(course_run, module: str, number: int) -> None:
    course_run.run(module[2:4])  # the notebook the exercise belongs to, and the ones before it
    result = solutions.exercises(module)[number](small_run=True)  # asserts its own answer
    assert isinstance(result, dict) and result, "a solution returns what it measured"
    assert json.loads(json.dumps(result, default=str)), "printable by `python -m solutions...`"
