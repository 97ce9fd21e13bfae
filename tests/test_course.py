"""The course's one size switch, names keyed by settings, and one-line errors for missing inputs."""

from __future__ import annotations

import json

import nbformat
import papermill
import pytest

from c3ae_utils import course, faces, training


@pytest.fixture
def empty_workspace(tmp_path, monkeypatch):
    """Artifacts and caches folders with nothing in them (a fresh clone)."""
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("C3AE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_the_switch_picks_the_small_or_the_full_sizes() -> None:
    assert course.size(True).small_run and course.size(True).max_images == 200
    assert course.size(False).max_images is None and course.size(False).num_folds is None
    assert course.size(True).epochs < course.size(False).epochs
    with pytest.raises(TypeError, match="SMALL_RUN must be True or False"):
        course.size("quick")


def test_caches_and_runs_are_named_by_their_settings() -> None:
    assert course.cache_name("utkface", True) == faces.cache_name("utkface", 200) == "utkface-n200"
    other = faces.cache_name("utkface", 200, faces.Settings(second_face_threshold=0.5))
    assert other.startswith("utkface-n200-s") and other != faces.cache_name("utkface", 200, faces.Settings())
    base = course.train_config("focal", True)
    assert base.run_name == course.train_config("focal", True, verbose=0).run_name  # not a setting
    changed = {course.train_config("focal", True, loss_weight=0.0).run_name,
               course.train_config("focal", True, seed=1).run_name,
               course.train_config("ce", True).run_name, course.train_config("focal", False).run_name}
    assert base.run_name not in changed and len(changed) == 4
    assert training.TrainConfig().resolved().run_name == "utkface-focal"  # the defaults keep a plain name


@pytest.mark.parametrize(
    ("find", "notebook"),
    [(lambda: course.metadata_table("utkface"), "01"),
     (lambda: course.face_cache("utkface", True), "02"),
     (lambda: course.trained_run("focal", True), "05")],
    ids=["metadata", "cache", "run"],
)
def test_a_missing_input_names_the_notebook_to_run_first(empty_workspace, find, notebook) -> None:
    with pytest.raises(course.MissingInput) as caught:
        find()
    message = str(caught.value)
    assert f"run notebook {notebook} first" in message and "min on a 2-core CPU" in message
    assert caught.value._render_traceback_() == [f"MissingInput: {message}"]  # one line in a notebook


def test_record_writes_plain_json_and_refuses_nan(empty_workspace) -> None:
    import numpy as np

    path = course.record("check", value=np.float32(1.5), shape=(2, 3), table={"a": np.int64(2)})
    assert json.loads(path.read_text()) == {"value": 1.5, "shape": [2, 3], "table": {"a": 2}}
    assert course.recorded("check")["shape"] == [2, 3]
    with pytest.raises(ValueError):
        course.record("check", value=float("nan"))


def test_a_notebook_without_its_input_stops_with_one_line(empty_workspace) -> None:
    output = empty_workspace / "03.ipynb"
    with pytest.raises(papermill.PapermillExecutionError):
        papermill.execute_notebook(str(course.find_notebook("03")), str(output), parameters={"SMALL_RUN": True},
                                   kernel_name="python3", progress_bar=False, cwd=str(course.notebooks_dir()))
    errors = [out for cell in nbformat.read(output, as_version=4).cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.output_type == "error"]
    assert len(errors) == 1 and len(errors[0].traceback) == 1, errors
    assert "run notebook 02 first with SMALL_RUN = True" in errors[0].traceback[0]


def test_the_notebook_runner_starts_kernels_without_the_encryption_warning(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("C3AE_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    parameters = nbformat.v4.new_code_cell("SMALL_RUN = False")
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell("print('small' if SMALL_RUN else 'full')")],
                                        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(notebook, tmp_path / "01_tiny.ipynb")
    executed = nbformat.read(course.run_notebook(tmp_path / "01_tiny.ipynb", small_run=True), as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "small\n"
    assert "without encryption" not in capfd.readouterr().err
    assert course.kernel_manager_config()["KernelManager"]["transport_encryption"] == "auto"
