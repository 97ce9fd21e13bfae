"""What every figure shares: the headless backend, `new_figure` (a grid of axes) and
`save_figure`, which writes a figure to `paths.figures_dir()` (`figures/generated/` or
`C3AE_FIGURES_DIR`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

# A headless default so the package plots on CI and servers; notebooks still show inline.
if matplotlib.get_backend().lower() not in {"agg", "module://matplotlib_inline.backend_inline"}:
    try:
        import IPython  # noqa: F401  (inside a notebook the inline backend is already set)
    except ImportError:
        matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from c3ae_utils import paths  # noqa: E402


def save_figure(figure: Figure, name: str, dpi: int = 120) -> Path:
    """Save `figure` as `<figures_dir>/<name>.png` and return the path."""
    if not name or "/" in name:
        raise ValueError(f"Figure name must be a plain file stem, got {name!r}.")
    target = paths.ensure_dir(paths.figures_dir()) / f"{name}.png"
    figure.savefig(target, dpi=dpi, bbox_inches="tight")
    return target


def new_figure(
    ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0
) -> tuple[Figure, np.ndarray]:
    """A figure and its axes, an array `[nrows, ncols]` (always 2-D), sized `width` x `height`
    inches per panel."""
    figure, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return figure, axes
