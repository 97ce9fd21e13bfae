"""The course as a learner meets it: JupyterLab in a real (headless) Chromium.

A real `jupyter lab` server serves a copy of notebooks/. In the browser, notebooks 01 and 04
are opened (showing the published outputs of a full run), their outputs cleared with Edit > Clear
Outputs of All Cells, the `SMALL_RUN = False` switch of the parameters cell is flipped to True by typing
in the editor, Run > Run All Cells runs them, and File > Save Notebook saves them. Every code
cell must run without an error and without TensorFlow's start-up noise, both on screen and in
the saved .ipynb. Screenshots land in artifacts/browser/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "browser"
NOTEBOOKS = ("01_explore_the_data", "04_build_the_model")  # 04 reads the tables 01 writes
RUN_TIMEOUT_S = 600
TF_NOISE = ("cuInit", "E0000", "absl::InitializeLog", "retracing")
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b", re.M)
# JupyterLab user settings: render every cell (no windowing) and no blank space after the last,
# so the checks and screenshots see the whole notebook; no news pop-up over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
# Every code cell of the open notebook: its prompt and its outputs' MIME types and text.
READ_CELLS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')].map(cell => ({
    prompt: cell.querySelector('.jp-InputPrompt')?.textContent.trim() ?? '',
    outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(output => ({
        mime: output.getAttribute('data-mime-type') ?? '', text: output.textContent ?? ''})),
}))"""
# Run All is over once no prompt shows [*] (running or queued) and the first cell has a number
# (none has one once the published outputs are cleared).
RUN_OVER_JS = """() => {
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
    return /\\d/.test(prompts[0] ?? '') && !prompts.some(p => p.includes('*'));
}"""
KERNEL_IDLE = re.compile(r"^(?!No Kernel).+ \| Idle$")  # the status bar's kernel item: "Python 3 (ipykernel) | Idle"


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab server: its address, token, served folder and log file."""

    url: str
    token: str
    root: Path
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        """The last `lines` lines of the server's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, timeout: float = 5) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status


def _stop(server: subprocess.Popen, lab: Lab) -> None:
    """Shut the server down through its API (which stops its kernels), killing what remains."""
    children = psutil.Process(server.pid).children(recursive=True)  # the kernels
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{lab.url}/api/shutdown?token={lab.token}", method="POST"), timeout=10):
            server.wait(timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        server.kill()
        server.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    for process in alive:
        process.kill()


@pytest.fixture(scope="module")
def lab(chromium: Browser, face_caches: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`jupyter lab` on a copy of notebooks/, with temporary artifacts and figures, the shared
    face caches, and the environment a learner's shell has (no MPLBACKEND, no TF log level)."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(REPO / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    home = base / "jupyter"  # private Jupyter config, data and runtime folders
    for name, settings in LAB_SETTINGS.items():
        path = home / "config" / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    env = {key: value for key, value in os.environ.items() if key not in ("MPLBACKEND", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(C3AE_ARTIFACTS_DIR=str(base / "artifacts"), C3AE_FIGURES_DIR=str(base / "figures"),
               C3AE_CACHE_DIR=str(face_caches), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    lab = Lab(f"http://127.0.0.1:{port}", token, root, base / "server.log")
    with open(lab.log, "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with {server.returncode}:\n{lab.log_tail()}", pytrace=False)
            try:
                if _get(f"{lab.url}/api/status?token={token}") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within 120 s:\n{lab.log_tail()}", pytrace=False)
            time.sleep(0.5)
        yield lab
    finally:
        _stop(server, lab)


def _menu(page: Page, menu: str, item: str) -> None:
    """Click `item` in the menu bar's `menu`."""
    page.get_by_role("menuitem", name=menu, exact=True).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def _run_in_lab(page: Page, lab: Lab, stem: str) -> tuple[float, list[dict[str, Any]]]:
    """Open `stem`, flip SMALL_RUN to True in the editor, Run All Cells, then save it.
    Returns the run's seconds and every code cell as the page shows it (prompt, outputs)."""
    from playwright.sync_api import expect

    page.goto(f"{lab.url}/lab/workspaces/{stem}/tree/{stem}.ipynb?token={lab.token}")
    kernel = page.locator("#jp-main-statusbar").get_by_text(KERNEL_IDLE)
    try:
        kernel.wait_for(timeout=120_000)
    except Exception as error:
        raise AssertionError(f"{stem}: the kernel did not start and go idle:\n{lab.log_tail()}") from error

    opened = page.evaluate(READ_CELLS_JS)
    assert opened and all(re.fullmatch(r"\[\d+\]:", cell["prompt"]) for cell in opened), \
        f"{stem}: the notebook did not open with the published outputs (a number in every prompt)"
    assert any(output["mime"].startswith("image/") for cell in opened for output in cell["outputs"]), \
        f"{stem}: the notebook opened without a figure"
    _menu(page, "Edit", "Clear Outputs of All Cells")
    assert not page.evaluate(RUN_OVER_JS), f"{stem}: execution counts remain after clearing the outputs"
    switch = page.locator(".jp-NotebookPanel .jp-CodeCell .cm-line", has_text=re.compile(r"^SMALL_RUN = "))
    expect(switch, f"{stem}: one `SMALL_RUN = False` line").to_have_text(re.compile(r"^SMALL_RUN = False\b"))
    switch.get_by_text("False", exact=True).dblclick()  # a double click selects the word
    page.keyboard.type("True")
    page.keyboard.press("Escape")
    expect(switch, f"{stem}: the switch flipped").to_have_text(re.compile(r"^SMALL_RUN = True\b"))

    _menu(page, "Run", "Run All Cells")
    started = time.monotonic()
    try:
        page.wait_for_function(RUN_OVER_JS, timeout=RUN_TIMEOUT_S * 1000, polling=1000)
        kernel.wait_for(timeout=60_000)
    except Exception as error:
        raise AssertionError(f"{stem}: Run All Cells still running after {RUN_TIMEOUT_S} s") from error
    seconds = time.monotonic() - started
    cells = page.evaluate(READ_CELLS_JS)

    _menu(page, "File", "Save Notebook")
    page.wait_for_selector(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty", state="detached", timeout=30_000)
    return seconds, cells


def _screenshot(page: Page, stem: str) -> None:
    """A screenshot of the whole notebook: the window is made as tall as the notebook's content."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewport = page.viewport_size
    height = page.evaluate("() => document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')?.scrollHeight ?? 0")
    page.set_viewport_size({"width": viewport["width"], "height": min(max(viewport["height"], height + 200), 30_000)})
    page.wait_for_timeout(500)  # let JupyterLab lay the taller window out
    page.screenshot(path=SCREENSHOTS / f"{stem}.png", full_page=True)
    page.set_viewport_size(viewport)


def _check_page(stem: str, seconds: float, cells: list[dict[str, Any]]) -> None:
    """Every code cell ran (numbered prompt); no output is an error or TensorFlow's noise."""
    not_run = [index for index, cell in enumerate(cells) if not re.fullmatch(r"\[\d+\]:", cell["prompt"])]
    assert not not_run, f"{stem} ({seconds:.0f} s): code cells {not_run} of {len(cells)} did not run"
    for index, cell in enumerate(cells):
        for output in cell["outputs"]:
            text = output["text"]
            if output["mime"] == "application/vnd.jupyter.stderr":
                assert not ERROR_TEXT.search(text), f"{stem}: code cell {index} shows an error:\n{text[-2000:]}"
            noise = [word for word in TF_NOISE if word in text]
            assert not noise, f"{stem}: code cell {index} shows TensorFlow noise {noise}:\n{text[-2000:]}"


def _check_saved(path: Path, shown: int) -> None:
    """The saved notebook: the `shown` code cells, SMALL_RUN = True, every code cell numbered, no error output."""
    cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    assert len(cells) == shown, f"{path.name}: {len(cells)} code cells saved, {shown} on the page"
    sources = ["".join(cell["source"]) for cell in cells]
    assert any(source.startswith("SMALL_RUN = True") for source in sources), f"{path.name}: SMALL_RUN = True was not saved"
    missing = [index for index, cell in enumerate(cells) if cell["execution_count"] is None]
    assert not missing, f"{path.name}: code cells {missing} have no execution_count"
    errors = [(index, output.get("ename"), output.get("evalue")) for index, cell in enumerate(cells)
              for output in cell["outputs"] if output["output_type"] == "error"]
    assert not errors, f"{path.name}: error outputs {errors}"


def test_learner_runs_notebooks_in_jupyterlab(chromium: Browser, lab: Lab) -> None:
    """Notebooks 01 and 04, SMALL_RUN flipped in the editor, run and saved from JupyterLab."""
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    total = time.monotonic()
    for stem in NOTEBOOKS:
        try:
            seconds, cells = _run_in_lab(page, lab, stem)
        except Exception:
            with contextlib.suppress(Exception):  # the screenshot must not hide the failure
                _screenshot(page, stem)
            raise
        _screenshot(page, stem)
        print(f"\n{stem}: ran in {seconds:.1f} s in JupyterLab ({len(cells)} code cells)")
        _check_page(stem, seconds, cells)
        _check_saved(lab.root / f"{stem}.ipynb", len(cells))
    print(f"both notebooks in the browser: {time.monotonic() - total:.1f} s")
