"""Figures of prediction and export (notebook 07): annotated photos, two models on the
same faces, ages along a video, latency and throughput per backend."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from c3ae_utils.plotting.figures import new_figure


def plot_annotated_photos(
    photos: dict[str, np.ndarray], ncols: int = 3, width: float = 5.0, max_side: int = 900
) -> Figure:
    """A grid of annotated RGB uint8 photos (e.g. `AgeEstimator.annotate`), titled by name;
    photos larger than `max_side` pixels are shown downscaled."""
    nrows = -(-len(photos) // ncols)
    figure, axes = new_figure(ncols=ncols, nrows=nrows, width=width, height=width * 0.75)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (name, photo) in zip(axes.flat, photos.items(), strict=False):
        scale = min(1.0, max_side / max(photo.shape[:2]))
        if scale < 1.0:
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        axis.imshow(photo)
        axis.set_title(name, fontsize=9)
    figure.tight_layout()
    return figure


def plot_age_agreement(ages: dict[str, np.ndarray], title: str = "Two models on the same faces") -> Figure:
    """Scatter of the ages (years) two models give the same faces, with the diagonal."""
    (name_x, ages_x), (name_y, ages_y) = list(ages.items())[:2]
    figure, axes = new_figure(width=4.5, height=4.5)
    axis = axes[0, 0]
    axis.scatter(ages_x, ages_y, s=18, alpha=0.7)
    low = float(min(np.min(ages_x), np.min(ages_y), 0))
    high = float(max(np.max(ages_x), np.max(ages_y))) + 5
    axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    axis.set(xlabel=f"{name_x}: age (years)", ylabel=f"{name_y}: age (years)", title=title)
    return figure


def plot_video_ages(rows: pd.DataFrame, title: str = "Predicted age along the video") -> Figure:
    """Predicted age (years) against time (s) for each face index of `predict_video`'s rows."""
    figure, axes = new_figure(width=7.0, height=3.5)
    axis = axes[0, 0]
    for face, group in rows.groupby("face"):
        axis.plot(group["time_s"], group["age"], marker="o", markersize=3, label=f"face {face}")
    axis.set(xlabel="time (s)", ylabel="predicted age (years)", title=title)
    if rows["face"].nunique() > 1:
        axis.legend(fontsize=8)
    return figure


def plot_latency(table: pd.DataFrame, reference_ms: float | None = 2.69) -> Figure:
    """Batch-1 latency (ms) and large-batch throughput (faces/s) per backend.

    `table`: rows of `inference.benchmark` (backend, batch_size, ms_per_batch, faces_per_s);
    `reference_ms`: a dashed line for comparison (SSR-Net: 2.69 ms per face).
    """
    small, large = table["batch_size"].min(), table["batch_size"].max()
    one = table[table["batch_size"] == small].set_index("backend")
    many = table[table["batch_size"] == large].set_index("backend")
    figure, axes = new_figure(ncols=2, width=5.5, height=3.5)
    axes[0, 0].barh(one.index, one["ms_per_batch"], color="tab:blue")
    if reference_ms is not None:
        axes[0, 0].axvline(reference_ms, color="grey", linestyle="--", label="SSR-Net 2.69 ms")
        axes[0, 0].legend(fontsize=8)
    axes[0, 0].set(xlabel=f"batch {small}: ms per call", title="Latency (lower is better)")
    axes[0, 1].barh(many.index, many["faces_per_s"], color="tab:green")
    axes[0, 1].set(xlabel=f"batch {large}: faces per second", title="Throughput (higher is better)")
    axes[0, 1].set_yticklabels([])
    figure.tight_layout()
    return figure
