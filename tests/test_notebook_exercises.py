"""The notebooks' exercises run as written, in the notebook's own namespace.

A learner does an exercise after running the notebook, in the same kernel: every name the
notebook defined is still there, with its last value. So a function the learner wrote (or
copied) must still be that function at the end; `test_no_learner_function_is_rebound` checks
this for every notebook from its source, and the notebook 04 test runs exercise 2 ("copy
`my_branch` ...") exactly as its text says, after executing the notebook's code cells in
order with SMALL_RUN = True (as papermill does, in this process: no kernel start-up).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from c3ae_utils import course


def _code_cells(path: Path) -> list[str]:
    """The sources of the notebook's code cells, in order."""
    return ["".join(cell["source"]) for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]


class _Bindings(ast.NodeVisitor):
    """Names bound in a cell's top-level scope, in order: (name, bound by def or class)."""

    def __init__(self) -> None:
        self.found: list[tuple[str, bool]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.found.append((node.name, True))  # its body is another scope: not visited

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def _another_scope(self, node: ast.AST) -> None:
        """A lambda's or a comprehension's variables are its own."""

    visit_Lambda = visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _another_scope

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self.found.append((node.id, False))

    def visit_alias(self, node: ast.alias) -> None:
        self.found.append(((node.asname or node.name).split(".")[0], False))


def _bindings(source: str) -> list[tuple[str, bool]]:
    visitor = _Bindings()
    visitor.visit(ast.parse(source))
    return visitor.found


@pytest.mark.parametrize("path", course.list_notebooks(), ids=lambda p: p.name)
def test_no_learner_function_is_rebound(path: Path) -> None:
    """A function or class the notebook defines keeps its name to the end (exercises reuse it)."""
    defined: dict[str, int] = {}
    for number, source in enumerate(_code_cells(path), start=1):
        for name, is_definition in _bindings(source):
            assert name not in defined, (
                f"{path.name}: code cell {number} rebinds {name!r}, which code cell {defined[name]} "
                "defines as a function or class; give the new value a name of its own"
            )
            if is_definition:
                defined[name] = number


def run_code_cells(path: Path, small_run: bool = True, through: str | None = None) -> dict[str, Any]:
    """Execute the notebook's code cells in order in a fresh namespace, with `SMALL_RUN =
    small_run` after the parameters cell (as papermill injects it), up to the cell that
    defines the function `through` (all cells when None); the namespace."""
    cells = json.loads(path.read_text())["cells"]
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for number, cell in enumerate(cell for cell in cells if cell["cell_type"] == "code"):
        source = "".join(cell["source"])
        assert not re.search(r"^\s*[%!]", source, flags=re.MULTILINE), f"{path.name}: IPython syntax in code cell {number + 1}"
        exec(compile(source, f"<{path.name}, code cell {number + 1}>", "exec"), namespace)
        if "parameters" in cell["metadata"].get("tags", []):
            namespace["SMALL_RUN"] = small_run
        if through is not None and through in {name for name, is_def in _bindings(source) if is_def}:
            break
    return namespace


def exercise_text(path: Path, number: int) -> str:
    """Item `number` of the notebook's "## Exercises" list."""
    markdown = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "markdown")
    exercises = markdown.split("## Exercises", 1)[1]
    return re.search(rf"^{number}\. (.+)$", exercises, flags=re.MULTILINE)[1]


def function_source(path: Path, name: str) -> str:
    """The source of the notebook's top-level function `name`, as its code cell writes it."""
    for source in _code_cells(path):
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return ast.get_source_segment(source, node)
    raise AssertionError(f"{path.name} defines no function {name!r}")


NOTEBOOK_04 = course.find_notebook("04")


@pytest.fixture(scope="module")
def notebook_04(face_caches: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Notebook 04's namespace once its code cells ran, with SMALL_RUN = True, through the one that
    defines `my_branch` (the later cells cannot rebind it: test_no_learner_function_is_rebound),
    writing to temporary artifacts and figures."""
    root = tmp_path_factory.mktemp("notebook_04")
    patch = pytest.MonkeyPatch()
    patch.setenv("C3AE_ARTIFACTS_DIR", str(root / "artifacts"))
    patch.setenv("C3AE_CACHE_DIR", str(face_caches))
    patch.setenv("C3AE_FIGURES_DIR", str(root / "figures"))
    yield run_code_cells(NOTEBOOK_04, through="my_branch")
    patch.undo()


@pytest.mark.slow
def test_notebook_04_exercise_2_runs_as_written(notebook_04: dict[str, Any]) -> None:
    # The exercise copies `my_branch`, which calls the notebook's `se_block` with use_se=True: both
    # must still be the learner's functions after the last cell.
    full = eval("my_branch(use_se=True, conv1_bias=False)", notebook_04)
    assert full.count_params() == eval("network.build_branch(use_se=True, conv1_bias=False)", notebook_04).count_params()

    text = exercise_text(NOTEBOOK_04, 2)
    spans = re.findall(r"`([^`]+)`", text)
    edit = next(span for span in spans if span.startswith("filters="))  # conv1's filters in the copy
    slim_call, full_call = (span for span in spans if span.startswith("network.count_macs("))
    assert "slim_branch(" in slim_call and "my_branch(" in full_call, text
    copy = function_source(NOTEBOOK_04, "my_branch").replace("def my_branch(", "def slim_branch(")
    assert copy.count("filters=32") == 1, "exercise 2 edits the one `filters=32` of my_branch"
    exec(copy.replace("filters=32", edit), notebook_04)  # the learner's new cell

    slim_macs, full_macs = eval(slim_call, notebook_04), eval(full_call, notebook_04)
    assert full_macs == eval("network.count_macs(network.build_branch(use_se=True))", notebook_04)
    assert 0.4 < 1 - slim_macs / full_macs < 0.5, (slim_macs, full_macs)  # conv1 and conv2 halved
    slim = eval(slim_call.removeprefix("network.count_macs(").removesuffix(")"), notebook_04)
    assert slim.count_params() < full.count_params()
    assert slim.get_layer("conv1").filters == 16 and slim.get_layer("se1_expand").units == 16
