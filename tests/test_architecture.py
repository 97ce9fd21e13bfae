"""The package's layout as checked contracts (docs/architecture.md): module size, the import
layers (import-linter, configured in pyproject.toml), and the rule for imports inside functions."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "c3ae_utils"
MAX_LINES = 500
# What a function may import: TensorFlow (directly, or a package module that imports it at its
# top), MTCNN, the optional export runtimes, and papermill (only the notebook runner needs it).
INNER_IMPORTS_ALLOWED = {"tensorflow", "mtcnn", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert", "papermill"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_file(name: str) -> Path | None:
    """The file of the package module `name` (dotted), or None for an outside module."""
    parts = name.split(".")
    if parts[0] != "c3ae_utils":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports_tensorflow_at_top(path: Path, seen: set[Path] | None = None) -> bool:
    """True if importing the module loads TensorFlow: at its top, or through a package module
    it imports at its top (a package's `__init__` re-exporting a module that imports it)."""
    seen = set() if seen is None else seen
    if path in seen:
        return False
    seen.add(path)
    for node in ast.parse(path.read_text()).body:
        for name in _imported_names(node):
            if name.split(".")[0] in ("tensorflow", "keras"):  # Keras loads TensorFlow, its backend here
                return True
            own = _module_file(name) or (_module_file(name.rsplit(".", 1)[0]) if name.startswith("c3ae_utils.") else None)
            if own is not None and _imports_tensorflow_at_top(own, seen):
                return True
    return False


def _imported_names(node: ast.AST) -> list[str]:
    """The dotted names an import statement loads ([] for any other node)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.module == "c3ae_utils" or node.module.startswith("c3ae_utils."):
            # `from c3ae_utils import pipeline` loads the module c3ae_utils.pipeline
            return [f"{node.module}.{alias.name}" for alias in node.names]
        return [node.module]
    return []


def _inner_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import inside a function body of the module."""
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                found += [(node.lineno, name) for name in _imported_names(node)]
    return found


def _inner_import_allowed(name: str) -> bool:
    if name.split(".")[0] in INNER_IMPORTS_ALLOWED:
        return True
    own = _module_file(name)
    if own is None and name.startswith("c3ae_utils."):  # `from c3ae_utils.x import function`
        own = _module_file(name.rsplit(".", 1)[0])
    return own is not None and _imports_tensorflow_at_top(own)


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along their seams): {long}"


def test_imports_inside_functions_only_load_tensorflow_mtcnn_or_optional_libraries():
    offending = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in _modules()
        for line, name in _inner_imports(path)
        if not _inner_import_allowed(name)
    ]
    assert not offending, "move these imports to the module top (docs/architecture.md):\n" + "\n".join(offending)


def test_the_inner_import_rule_catches_a_package_import_inside_a_function(tmp_path):
    module = tmp_path / "example.py"
    module.write_text(textwrap.dedent("""
        import numpy
        def late():
            from c3ae_utils import paths
            import tensorflow as tf
            return paths, tf
    """))
    names = [name for _, name in _inner_imports(module)]
    assert names == ["c3ae_utils.paths", "tensorflow"]
    assert [_inner_import_allowed(name) for name in names] == [False, True]
    assert _inner_import_allowed("c3ae_utils.pipeline")  # tf.data: imports TensorFlow at its top


def _lint_imports() -> str:
    executable = Path(sys.executable).with_name("lint-imports")
    assert executable.exists() or shutil.which("lint-imports"), "lint-imports is missing: run `make setup`"
    return str(executable if executable.exists() else shutil.which("lint-imports"))


def test_import_layers_hold():
    result = subprocess.run([_lint_imports(), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    """A copy of the package with one import from a low layer (paths) of a high one (course)."""
    shutil.copytree(PACKAGE, tmp_path / "c3ae_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PACKAGE.parent / "pyproject.toml", tmp_path)
    with (tmp_path / "c3ae_utils" / "paths.py").open("a") as module:
        module.write("\nfrom c3ae_utils import course  # noqa: E402,F401\n")
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}  # the copy, not the installed package
    result = subprocess.run([_lint_imports(), "--no-cache"], cwd=tmp_path, env=environment,
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "c3ae_utils.paths -> c3ae_utils.course" in result.stdout
