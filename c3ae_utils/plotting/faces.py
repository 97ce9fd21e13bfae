"""Figures of the faces (notebook 02): detections, alignment, the three context boxes,
the images that gave no face, the photos that survive each step, the head poses."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from c3ae_utils.plotting.figures import new_figure

_LANDMARK_COLOURS = ("tab:blue", "tab:cyan", "tab:red", "tab:green", "tab:olive")
_SCALE_COLOURS = ("tab:orange", "tab:green", "tab:blue")


def _draw_face(axis, face, box_colour: str = "lime", label: str | None = None) -> None:
    """Draw a faces.Face (box x1, y1, x2, y2 and 5 landmarks) on an axis."""
    x1, y1, x2, y2 = (float(v) for v in face.box)
    axis.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=box_colour, linewidth=1.5))
    for (x, y), colour in zip(face.landmarks, _LANDMARK_COLOURS, strict=True):
        axis.plot(x, y, "o", color=colour, markersize=3)
    if label:
        axis.text(x1, y1 - 3, label, color=box_colour, fontsize=7, va="bottom")


def plot_detections(images: list[np.ndarray], detections: list[list], titles: list[str] | None = None,
                    ncols: int = 4) -> Figure:
    """Images (RGB uint8) with every detected face's box, confidence and 5 landmarks drawn."""
    nrows = int(np.ceil(len(images) / ncols))
    figure, axes = new_figure(ncols=ncols, nrows=nrows, width=2.6, height=2.8)
    for axis in axes.flat:
        axis.axis("off")
    for index, (image, found) in enumerate(zip(images, detections, strict=True)):
        axis = axes.flat[index]
        axis.imshow(image)
        for face in found:
            _draw_face(axis, face, label=f"{face.confidence:.2f}")
        axis.set_title(titles[index] if titles else f"{len(found)} face(s)", fontsize=8)
    figure.tight_layout()
    return figure


def plot_alignment(originals: list[np.ndarray], original_faces: list, chips: list[np.ndarray],
                   chip_faces: list) -> Figure:
    """Two rows: the original photos with their landmarks, and the aligned chips (eyes level)."""
    count = len(originals)
    figure, axes = new_figure(ncols=count, nrows=2, width=2.4, height=2.5)
    for column in range(count):
        for row, (image, face) in enumerate(((originals[column], original_faces[column]),
                                             (chips[column], chip_faces[column]))):
            axis = axes[row, column]
            axis.imshow(image)
            _draw_face(axis, face)
            axis.axis("off")
            if row == 1:
                axis.axhline(float(face.landmarks[:2, 1].mean()), color="white", linewidth=0.6, linestyle="--")
        axes[0, column].set_title(f"eye line {original_faces[column].eye_angle:+.1f} deg", fontsize=8)
        axes[1, column].set_title(f"aligned: {chip_faces[column].eye_angle:+.1f} deg", fontsize=8)
    figure.tight_layout()
    return figure


def plot_context_boxes(chip: np.ndarray, boxes: np.ndarray, crops: np.ndarray,
                       scale_names: tuple[str, ...] = ("outer", "middle", "inner")) -> Figure:
    """The three context boxes drawn on an aligned chip, then the three 64x64 crops they give."""
    figure, axes = new_figure(ncols=1 + len(crops), nrows=1, width=2.8, height=3.0)
    axes[0, 0].imshow(chip)
    for box, colour, name in zip(boxes, _SCALE_COLOURS, scale_names, strict=True):
        x1, y1, x2, y2 = (float(v) for v in box)
        axes[0, 0].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2))
        axes[0, 0].text(x1, y1 - 2, name, color=colour, fontsize=8)
    axes[0, 0].set_xlim(min(0, boxes[:, 0].min()) - 4, max(chip.shape[1], boxes[:, 2].max()) + 4)
    axes[0, 0].set_ylim(max(chip.shape[0], boxes[:, 3].max()) + 4, min(0, boxes[:, 1].min()) - 12)
    axes[0, 0].set_title("aligned chip and the three boxes", fontsize=9)
    for index, (crop, colour, name) in enumerate(zip(crops, _SCALE_COLOURS, scale_names, strict=True)):
        axis = axes[0, index + 1]
        axis.imshow(crop)
        axis.set_title(f"{name} crop {crop.shape[1]}x{crop.shape[0]}", fontsize=9, color=colour)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure


def plot_failure_gallery(images: list[np.ndarray | None], captions: list[str], ncols: int = 5) -> Figure:
    """Images that gave no usable face, each captioned with its reason (None: nothing to show)."""
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    figure, axes = new_figure(ncols=ncols, nrows=nrows, width=2.2, height=2.5)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, captions, strict=False):
        if image is not None:
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        else:
            axis.text(0.5, 0.5, "(no image)", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(caption, fontsize=7)
    figure.tight_layout()
    return figure


def plot_pose_distribution(tables: dict[str, pd.DataFrame], columns: tuple[str, ...] = ("yaw", "pitch", "roll"),
                           bins: int = 40) -> Figure:
    """Histograms of yaw, pitch and roll (degrees), one colour per dataset."""
    figure, axes = new_figure(ncols=len(columns), nrows=1, width=4.0, height=3.0)
    for axis, column in zip(axes[0], columns, strict=True):
        for name, table in tables.items():
            values = pd.to_numeric(table[column], errors="coerce").dropna().clip(-90, 90)
            axis.hist(values, bins=bins, range=(-90, 90), alpha=0.5, density=True, label=name)
        axis.set_xlabel(f"{column} (degrees)")
        axis.set_ylabel("density")
    axes[0, 0].legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_face_yield(yields: pd.DataFrame, steps: tuple[str, ...] = (
        "images", "readable", "face found", "no second face", "face large enough")) -> Figure:
    """Share of the photos (%) left after each step of `faces.yield_table`, one line per
    dataset (its rows), each step marked with the photos it lost."""
    figure, axes = new_figure(width=7.5, height=3.6)
    axis = axes[0, 0]
    counts = yields[list(steps)].astype(int)
    shares = 100.0 * counts.div(counts["images"], axis=0)
    lost = -counts.diff(axis=1)  # photos dropped at each step (NaN at the first)
    positions = np.arange(len(steps))
    for index, name in enumerate(counts.index):
        line, = axis.plot(positions, shares.loc[name], marker="o", label=f"{name} ({counts.loc[name, 'images']:,} photos)")
        for position, step in enumerate(steps[1:], start=1):
            if lost.loc[name, step]:
                axis.annotate(f"-{int(lost.loc[name, step]):,}", (position, shares.loc[name, step]), textcoords="offset points",
                              xytext=(0, 7 if index % 2 else -13),  # alternate datasets label above, below
                              ha="center", fontsize=8, color=line.get_color())
    axis.set_xticks(positions, steps)
    axis.set_xlim(-0.4, len(steps) - 0.6)
    low = float(shares.to_numpy().min())
    axis.set(ylabel="photos left (%)", ylim=(min(low - 0.5 * (100.0 - low) - 0.5, 99.0), 100.3),
             title="Photos that survive each step of the cache")
    axis.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    return figure
