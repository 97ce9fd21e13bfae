"""Publishing the course notebooks with the outputs of a full run, and telling when they are stale.

    make run-all      # every notebook with SMALL_RUN = False -> artifacts/notebooks/
    make publish      # their outputs into notebooks/, fingerprinted (python -m c3ae_utils.publishing)

A published notebook records, in its metadata under `FINGERPRINT_KEY`, the SHA-256 of its code
cells' Python tokens (comments aside) and the package version its outputs were made with.
`stale_notebooks()` compares that record with the code as it is now: a code cell edited after
publishing makes the notebook stale (a comment edited does not), and `tests/test_published_notebooks.py` names it and the command that refreshes it.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import sys
import tokenize
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat

from c3ae_utils import cli, course, paths

FINGERPRINT_KEY = "c3ae_published"
MAX_NOTEBOOK_MB = 3.0  # a published notebook larger than this is refused (lower the figure DPI)
REFRESH_COMMAND = "make run-all && make publish"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
PHOTOS_TAG = "photos"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WITHHELD = ("*Figure not committed: it shows photos (UTKFace, FG-NET, the reference portraits or the demo "
            "pictures) whose licences allow research and teaching use, not redistribution. Run the cell to see it.*")


def package_version() -> str:
    """The installed version of the course package (the fingerprint includes it)."""
    try:
        return metadata.version("c3ae-course")
    except metadata.PackageNotFoundError:
        return "unknown"


def _is_injected(cell: Any) -> bool:
    """True for papermill's injected-parameters cell (it exists only in executed copies)."""
    return "injected-parameters" in cell.get("metadata", {}).get("tags", [])


def code_sources(notebook: Any) -> list[str]:
    """The source of every code cell, in order, without papermill's injected parameters."""
    return [cell.source for cell in notebook.cells if cell.cell_type == "code" and not _is_injected(cell)]


def _code_tokens(source: str) -> str:
    """`source` as its Python tokens, without comments and blank lines: what can change its
    outputs (a comment edit, say the minutes a notebook takes, leaves them valid). A cell
    Python cannot tokenize (IPython syntax) counts as its text."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    return "\x01".join(token.string for token in tokens if token.type not in (tokenize.COMMENT, tokenize.NL))


def code_fingerprint(notebook: Any, version: str | None = None) -> str:
    """SHA-256 (hex) of the code cells' tokens (`_code_tokens`) and the package version."""
    digest = hashlib.sha256((version or package_version()).encode())
    for source in code_sources(notebook):
        digest.update(b"\x00" + _code_tokens(source).encode())
    return digest.hexdigest()


def is_image(output: Any) -> bool:
    """Whether a cell output is a figure (an image of any of `IMAGE_TYPES`)."""
    return any(kind in output.get("data", {}) for kind in IMAGE_TYPES)


def is_widget(output: Any) -> bool:
    """True for an output that shows a live widget (tqdm's progress bar in Jupyter)."""
    return WIDGET_VIEW in output.get("data", {})


def image_count(notebook: Any) -> int:
    """How many figures (image outputs) the notebook's cells hold."""
    return sum(is_image(output) for cell in notebook.cells for output in cell.get("outputs", []))


def withheld_count(notebook: Any) -> int:
    """How many figures `make publish` left out of the notebook as photos (see `PHOTOS_TAG`)."""
    return sum(output.get("data", {}).get("text/markdown") == WITHHELD
               for cell in notebook.cells for output in cell.get("outputs", []))


@dataclass(frozen=True)
class Staleness:
    """Why a committed notebook's outputs do not match its code."""

    notebook: str
    reason: str

    def __str__(self) -> str:
        return f"{self.notebook}: {self.reason}; refresh it with `{REFRESH_COMMAND}`."


def staleness(path: Path) -> Staleness | None:
    """None when the notebook's outputs were made from its code as it is now."""
    notebook = nbformat.read(path, as_version=4)
    record = notebook.metadata.get(FINGERPRINT_KEY)
    if record is None:
        by_hand = any(cell.get("outputs") for cell in notebook.cells)
        return Staleness(path.name, "has outputs that `make publish` did not make" if by_hand else "has no published outputs")
    now = code_fingerprint(notebook, record.get("package_version"))
    if now != record.get("code_sha256"):
        return Staleness(path.name, "code changed since its outputs were made")
    return None


def stale_notebooks(folder: Path | None = None) -> list[Staleness]:
    """Every notebook of `folder` (default: the course's) whose outputs do not match its code."""
    notebooks = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")) if folder else course.list_notebooks()
    return [found for path in notebooks if (found := staleness(path)) is not None]


def _errors(notebook: Any) -> list[str]:
    """One line per error output of an executed notebook."""
    return [
        f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
        for index, cell in enumerate(notebook.cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def _check_executed(executed: Any, source: Any, name: str) -> None:
    """ValueError unless `executed` is a clean full run of `source`'s code."""
    parameters = executed.metadata.get("papermill", {}).get("parameters", {})
    if parameters.get("SMALL_RUN") is not False:
        raise ValueError(f"{name} was executed with SMALL_RUN = {parameters.get('SMALL_RUN')!r}; "
                         "publish only a full run (`make run-all`).")
    if [_code_tokens(code) for code in code_sources(executed)] != [_code_tokens(code) for code in code_sources(source)]:
        raise ValueError(f"{name}'s executed copy ran other code than notebooks/{name}; run it again (`make run-all`).")
    errors = _errors(executed)
    if errors:
        raise ValueError(f"{name}'s executed copy has errors ({'; '.join(errors)}); fix them and run it again.")


def _shareable(cell: Any, outputs: list) -> list:
    """`outputs` without widgets, and without their images when the cell is tagged `photos`
    (a note stands in for each image)."""
    # a widget needs its kernel: without one, GitHub and the book show its first frame ("0%")
    outputs = [output for output in outputs if not is_widget(output)]
    if PHOTOS_TAG not in cell.get("metadata", {}).get("tags", []):
        return outputs
    return [nbformat.v4.new_output("display_data", data={"text/markdown": WITHHELD})
            if is_image(output) else output for output in outputs]


def published(executed: Any, source: Any, minutes: float | None = None) -> Any:
    """`source` with the outputs of `executed` (the same code cells, in order) and its fingerprint."""
    result = copy.deepcopy(source)
    ran = iter(cell for cell in executed.cells if cell.cell_type == "code" and not _is_injected(cell))
    for cell in result.cells:
        if cell.cell_type == "code":
            done = next(ran)
            cell.outputs, cell.execution_count = _shareable(cell, done.outputs), done.execution_count
    result.metadata[FINGERPRINT_KEY] = {
        "code_sha256": code_fingerprint(result),
        "package_version": package_version(),
        "minutes": None if minutes is None else round(minutes, 1),
        "figures": image_count(result),
    }
    return result


def _run_minutes(executed: Any) -> float | None:
    """How long papermill took to execute the notebook (minutes), if it recorded it."""
    seconds = executed.metadata.get("papermill", {}).get("duration")
    return None if seconds is None else seconds / 60


def _published_text(source_path: Path, executed_path: Path) -> str:
    """The text of `source_path` with the outputs of its executed full-run copy, once both are
    checked (a clean full run of the same code, at most `MAX_NOTEBOOK_MB`); nothing is written."""
    if not executed_path.exists():
        raise FileNotFoundError(f"{executed_path} is missing: run the course first (`make run-all`).")
    source = nbformat.read(source_path, as_version=4)
    executed = nbformat.read(executed_path, as_version=4)
    _check_executed(executed, source, source_path.name)
    text = nbformat.writes(published(executed, source, _run_minutes(executed))) + "\n"
    megabytes = len(text.encode()) / 1e6
    if megabytes > MAX_NOTEBOOK_MB:
        raise ValueError(f"{source_path.name} would be {megabytes:.1f} MB with its outputs (limit "
                         f"{MAX_NOTEBOOK_MB:g} MB): lower the figures' DPI and run it again.")
    return text


def publish_notebook(source_path: Path, executed_path: Path) -> Path:
    """Write `source_path` with the outputs of its executed full-run copy; return it."""
    return paths.write_text_atomic(source_path, _published_text(source_path, executed_path))


def publish_all(executed_dir: Path | None = None) -> list[Path]:
    """Publish every course notebook from its executed copy in `executed_dir`
    (default: `artifacts/notebooks/`, where `make run-all` writes them). All are checked first."""
    folder = executed_dir or paths.artifacts_dir() / "notebooks"
    texts = {source: _published_text(source, folder / source.name) for source in course.list_notebooks()}
    return [paths.write_text_atomic(source, text) for source, text in texts.items()]


def build_parser() -> argparse.ArgumentParser:
    """The command-line options of `python -m c3ae_utils.publishing`."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executed", type=Path, default=None,
                        help="folder of the executed full-run copies (default: artifacts/notebooks)")
    parser.add_argument("--check", action="store_true", help="only list the stale notebooks (exit 1 if any)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Publish the notebooks (or, with --check, list the stale ones)."""
    args = build_parser().parse_args(argv)
    if args.check:
        stale = stale_notebooks()
        for found in stale:
            print(found)
        return 1 if stale else 0
    for path in publish_all(args.executed):
        print(f"published {path.relative_to(paths.repo_root())}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, prog="python -m c3ae_utils.publishing"))
