"""Figures of the model (notebook 04): the C3AE block diagram, what the SE blocks do,
portraits with their predicted ages and crops."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

from c3ae_utils.plotting.figures import new_figure


def plot_c3ae_architecture(crops: np.ndarray | None = None, use_se: bool = True,
                           num_bins: int = 12) -> Figure:
    """A block diagram of C3AE: three crops (uint8 `[3, 64, 64, 3]` RGB thumbnails if given)
    -> one shared branch -> concatenation -> W1 (distribution) -> W2 (age)."""
    figure, axes = new_figure(width=13.0, height=6.0)
    axis = axes[0, 0]
    axis.set(xlim=(0, 13), ylim=(0, 6.4))
    axis.axis("off")

    def box(x: float, y: float, w: float, h: float, text: str, color: str, size: int = 9) -> None:
        axis.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.06", facecolor=color,
                                      edgecolor="black", linewidth=1))
        axis.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(start: tuple[float, float], end: tuple[float, float]) -> None:
        axis.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "lw": 1.3})

    se = ["  + SE (32 -> 16 -> 32)"] if use_se else []
    stages = (["64x64x3 crop", "conv1 3x3x32 -> 62x62", "BRA: BN, ReLU, avg-pool -> 31x31", *se,
               "conv2 3x3x32 -> 29x29", "BRA -> 14x14", *se, "conv3 3x3x32 -> 12x12",
               "BRA -> 6x6", *se, "conv4 3x3x32 -> 4x4", "BN, ReLU", *se,
               "conv5 1x1x32 -> 4x4", *se, "flatten (h, w, c) -> 512"])
    for shift in (0.24, 0.12):  # shadows: the same branch is used three times
        box(3.4 + shift, 0.3 + shift, 3.4, 5.6, "", "#dde8f5")
    box(3.4, 0.3, 3.4, 5.6, "\n".join(stages), "#c6dbef", size=8)
    axis.text(5.1, 6.25, "shared branch (one set of weights)", ha="center", fontsize=10, weight="bold")
    for index, (name, y) in enumerate(zip(("outer", "middle", "inner"), (4.4, 2.55, 0.7), strict=True)):
        if crops is not None:
            axis.imshow(crops[index], extent=(0.3, 1.6, y, y + 1.3), aspect="auto", zorder=2)
        else:
            box(0.3, y, 1.3, 1.3, "64x64x3", "#f0f0f0")
        axis.text(0.95, y - 0.22, f"{name} crop", ha="center", fontsize=9)
        arrow((1.7, y + 0.65), (3.35, 3.1 + (1 - index) * 1.2))
    box(7.6, 2.5, 1.5, 1.2, "concatenate\n3 x 512\n= 1536", "#fdd0a2")
    box(9.6, 2.5, 1.45, 1.2, f"W1: Dense({num_bins})\nsoftmax\n-> distribution", "#c7e9c0")
    box(11.5, 2.5, 1.3, 1.2, "W2: Dense(1)\n-> age\n(years)", "#fcbba1")
    arrow((7.0, 3.1), (7.55, 3.1))
    arrow((9.15, 3.1), (9.55, 3.1))
    arrow((11.1, 3.1), (11.45, 3.1))
    axis.text(10.3, 1.9, f"two-point target\nover {num_bins} bins (0, 10, ...)", ha="center", fontsize=8)
    return figure


def plot_se_channel_scales(scales: dict[str, np.ndarray], crop: np.ndarray | None = None,
                           face: int = 0) -> Figure:
    """What SE does on real faces: `scales[block]` float `[n, channels]` in (0, 1).

    Left: the crop (uint8 `[64, 64, 3]`); middle: face `face`'s weight for every channel of
    every SE block; right: the spread of each block's weights over all faces and channels.
    """
    blocks = list(scales)
    figure, axes = plt.subplots(1, 3, figsize=(15, 3.6), gridspec_kw={"width_ratios": [1, 4, 2]})
    if crop is not None:
        axes[0].imshow(crop)
    axes[0].set_title("branch input (crop)")
    axes[0].axis("off")
    matrix = np.stack([scales[block][face] for block in blocks])
    image = axes[1].imshow(matrix, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    axes[1].set_yticks(range(len(blocks)), blocks)
    axes[1].set(xlabel="channel", title="SE weight per channel (this face)")
    figure.colorbar(image, ax=axes[1], label="scale")
    axes[2].boxplot([scales[block].ravel() for block in blocks], tick_labels=blocks)
    axes[2].set(ylim=(0, 1), ylabel="scale", title=f"all {len(next(iter(scales.values())))} faces")
    figure.tight_layout()
    return figure


def plot_portrait_predictions(images: dict[str, np.ndarray], boxes: dict[str, np.ndarray],
                              crops: dict[str, np.ndarray], ages: dict[str, dict[str, float]]) -> Figure:
    """One row per portrait: the RGB image with its face box (x1, y1, x2, y2 pixels) and the
    predicted age of each model (`ages[portrait][model]`, years), then its three crops."""
    figure, axes = plt.subplots(len(images), 4, figsize=(12, 3.6 * len(images)), squeeze=False,
                                gridspec_kw={"width_ratios": [2, 1, 1, 1]})
    for row, name in enumerate(images):
        axes[row, 0].imshow(images[name])
        x1, y1, x2, y2 = boxes[name]
        axes[row, 0].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", lw=2))
        label = " | ".join(f"{model}: {age:.1f}" for model, age in ages[name].items())
        axes[row, 0].set_title(f"{name}\n{label}", fontsize=9)
        for column, scale in enumerate(("outer", "middle", "inner"), start=1):
            axes[row, column].imshow(crops[name][column - 1])
            axes[row, column].set_title(scale, fontsize=9)
        for axis in axes[row]:
            axis.axis("off")
    figure.tight_layout()
    return figure
