"""The committed notebooks' outputs match their code (`make run-all && make publish` made them),
and publishing refuses what it must: a small run, other code, errors."""

from __future__ import annotations

import nbformat
import papermill
import pytest

from c3ae_utils import course, publishing

MIN_FIGURES = 25  # committed over the seven notebooks, not counting the photos withheld (issue 29)
# What a learner should not have to read past: TensorFlow/Keras/Jupyter noise seen in earlier runs.
NOISE = ("shuffle=True was passed", "XNNPACK delegate", "without encryption", "oneDNN custom operations",
         "Unable to register cu", "This TensorFlow binary is optimized")


def test_every_notebook_is_published_with_outputs_that_match_its_code():
    stale = publishing.stale_notebooks()
    assert not stale, "\n".join(map(str, stale))


def test_published_notebooks_are_clean_full_runs_with_their_figures():
    """Every code cell ran, in order, without an error or known noise; each notebook has a
    figure and stays under the size limit; the seven hold at least `MIN_FIGURES` figures, and no
    progress bar widget (its text in a notebook without a kernel is the bar's first frame, 0%)."""
    figures = {}
    for path in course.list_notebooks():
        assert path.stat().st_size < publishing.MAX_NOTEBOOK_MB * 1e6, path.name
        notebook = nbformat.read(path, as_version=4)
        cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        counts = [cell.execution_count or 0 for cell in cells]  # papermill's injected cell took a count too
        assert counts[0] >= 1 and all(a < b for a, b in zip(counts, counts[1:], strict=False)), f"{path.name}: not run in order: {counts}"
        texts = [str(output.get("text", "")) + str(output.get("evalue", "")) for cell in cells for output in cell.outputs]
        assert not [output for cell in cells for output in cell.outputs if output.output_type == "error"], path.name
        assert not [text for text in texts for noise in NOISE if noise in text], path.name
        committed = publishing.image_count(notebook)
        assert committed == notebook.metadata[publishing.FINGERPRINT_KEY]["figures"] >= 1, path.name
        assert not [output for cell in cells for output in cell.outputs if publishing.is_widget(output)], path.name
        figures[path.stem] = committed
    assert sum(figures.values()) >= MIN_FIGURES, figures


def test_no_committed_notebook_shows_photos():
    """Cells tagged `photos` show dataset or third-party pictures: their figures stay out of git."""
    for path in course.list_notebooks():
        notebook = nbformat.read(path, as_version=4)
        tagged = [cell for cell in notebook.cells if publishing.PHOTOS_TAG in cell.metadata.get("tags", [])]
        assert tagged or path.stem.startswith("05"), f"{path.name} tags none of its photo figures"
        assert not [output for cell in tagged for output in cell.outputs if publishing.is_image(output)], path.name


def _tiny_course_notebook() -> nbformat.NotebookNode:
    parameters = nbformat.v4.new_code_cell("SMALL_RUN = False")
    parameters.metadata["tags"] = ["parameters"]
    figure = nbformat.v4.new_code_cell(
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.figure(figsize=(2, 2))\n"
        "plt.plot([0, 1], [1, 0])\nplt.show()\nprint('size', 'small' if SMALL_RUN else 'full')"
    )
    progress = nbformat.v4.new_code_cell("from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n    pass")
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Tiny"), parameters, figure, progress],
                                    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def _tagged(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    notebook.cells[2].metadata["tags"] = [publishing.PHOTOS_TAG]
    return notebook


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A tiny notebook and its copy executed by papermill with SMALL_RUN = False."""
    folder = tmp_path_factory.mktemp("publish")
    source = folder / "01_tiny.ipynb"
    nbformat.write(_tiny_course_notebook(), source)
    papermill.execute_notebook(str(source), str(folder / "executed.ipynb"), parameters={"SMALL_RUN": False},
                               kernel_name="python3", progress_bar=False)
    return source, folder / "executed.ipynb"


def test_publishing_copies_the_outputs_and_an_edited_cell_makes_it_stale(executed, tmp_path):
    source, run = executed
    target = tmp_path / source.name
    target.write_bytes(source.read_bytes())
    publishing.publish_notebook(target, run)
    notebook = nbformat.read(target, as_version=4)
    assert publishing.image_count(notebook) == 1
    assert "size full" in notebook.cells[2].outputs[-1]["text"]
    ran = nbformat.read(run, as_version=4).cells[-1].outputs
    assert any(map(publishing.is_widget, ran)), ran  # tqdm.auto drew a widget in the kernel...
    assert not any(map(publishing.is_widget, notebook.cells[3].outputs)), notebook.cells[3].outputs  # ...left out
    assert not any(publishing._is_injected(cell) for cell in notebook.cells)
    assert publishing.staleness(target) is None
    assert publishing.staleness(source).reason == "has no published outputs"
    assert publishing.staleness(run).reason == "has outputs that `make publish` did not make"  # run, not published

    photos = publishing.published(nbformat.read(run, as_version=4), _tagged(nbformat.read(source, as_version=4)))
    assert publishing.image_count(photos) == 0 and publishing.withheld_count(photos) == 1

    notebook.cells[2].source = notebook.cells[2].source.replace("plt.show()", "plt.show()  # a comment changes no output")
    nbformat.write(notebook, target)
    assert publishing.staleness(target) is None, "a comment changes no output"
    notebook.cells[2].source += "\nprint('edited')"
    nbformat.write(notebook, target)
    found = publishing.staleness(target)
    assert found is not None and found.notebook == "01_tiny.ipynb"
    assert "code changed" in str(found) and publishing.REFRESH_COMMAND in str(found)


def test_publishing_refuses_a_small_run_other_code_and_errors(executed, tmp_path):
    source, run = executed
    target = tmp_path / source.name
    target.write_bytes(source.read_bytes())
    small = nbformat.read(run, as_version=4)
    small.metadata.papermill.parameters["SMALL_RUN"] = True
    nbformat.write(small, tmp_path / "small.ipynb")
    with pytest.raises(ValueError, match="SMALL_RUN = True"):
        publishing.publish_notebook(target, tmp_path / "small.ipynb")

    other = nbformat.read(run, as_version=4)
    other.cells[-1].source = "print('other code')"
    nbformat.write(other, tmp_path / "other.ipynb")
    with pytest.raises(ValueError, match="ran other code"):
        publishing.publish_notebook(target, tmp_path / "other.ipynb")

    failed = nbformat.read(run, as_version=4)
    failed.cells[-1].outputs.append(nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[]))
    nbformat.write(failed, tmp_path / "failed.ipynb")
    with pytest.raises(ValueError, match="ZeroDivisionError"):
        publishing.publish_notebook(target, tmp_path / "failed.ipynb")
    assert nbformat.read(target, as_version=4).metadata.get(publishing.FINGERPRINT_KEY) is None  # nothing written
