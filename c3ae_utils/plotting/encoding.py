"""Figures of the age encodings and the augmented batches (notebook 03): label
encodings, round-trip errors, label mass per bin, faces before and after augmentation."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from c3ae_utils.plotting.figures import new_figure


def plot_label_encodings(encodings: dict[str, np.ndarray], ages: np.ndarray, bin_values: np.ndarray) -> Figure:
    """Bars of each encoding (`{name: float [len(ages), num_bins]}`) for each age (years): one row per encoding."""
    names = list(encodings)
    figure, axes = new_figure(ncols=len(ages), nrows=len(names), width=2.6, height=1.9)
    for row, name in enumerate(names):
        for column, age in enumerate(ages):
            axis = axes[row, column]
            axis.bar(bin_values, encodings[name][column], width=0.8 * (bin_values[1] - bin_values[0]),
                     color=f"C{row}")
            axis.axvline(age, color="black", linestyle="--", linewidth=1)
            axis.set_ylim(0, 1.05)
            axis.set_xticks(bin_values[::2])
            axis.tick_params(labelsize=7)
            if row == 0:
                axis.set_title(f"age {age:g}", fontsize=9)
            if column == 0:
                axis.set_ylabel(name, fontsize=9)
            if row == len(names) - 1:
                axis.set_xlabel("bin (years)", fontsize=8)
    figure.tight_layout()
    return figure


def plot_round_trip_errors(ages: np.ndarray, errors: dict[str, np.ndarray]) -> Figure:
    """Decoded minus true age (years) against the true age, one line per encoding."""
    figure, axes = new_figure(width=8.0, height=3.5)
    axis = axes[0, 0]
    for name, error in errors.items():
        axis.plot(ages, error, label=name, linewidth=1.5)
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xlabel("true age (years)")
    axis.set_ylabel("decode(encode(age)) - age (years)")
    axis.set_title("Round trip through each encoding")
    axis.legend()
    figure.tight_layout()
    return figure


def plot_bin_mass(masses: dict[str, np.ndarray], bin_values: np.ndarray,
                  title: str = "Label mass per bin") -> Figure:
    """Grouped bars: the summed label mass of each bin (`{name: float [num_bins]}`), log scale."""
    figure, axes = new_figure(width=8.0, height=3.5)
    axis = axes[0, 0]
    width = 0.8 * (bin_values[1] - bin_values[0]) / max(len(masses), 1)
    for index, (name, mass) in enumerate(masses.items()):
        offset = (index - (len(masses) - 1) / 2) * width
        axis.bar(bin_values + offset, np.maximum(mass, 1e-3), width=width, label=name, color=f"C{index}")
    axis.set_yscale("log")
    axis.set_xticks(bin_values)
    axis.set_xlabel("bin (years)")
    axis.set_ylabel("summed label mass (faces)")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    return figure


def plot_augmented_faces(original: np.ndarray, augmented: np.ndarray, labels: list[str],
                         scale_names: tuple[str, ...] = ("outer", "middle", "inner")) -> Figure:
    """One row per face: its three scales before, then after augmentation.

    original, augmented: `[n, 3, 64, 64, 3]` RGB 0-255 (uint8 or float); labels: `n` row labels.
    """
    count = len(original)
    figure, axes = new_figure(ncols=2 * len(scale_names), nrows=count, width=1.3, height=1.4)
    for row in range(count):
        for half, images in enumerate((original, augmented)):
            for scale, name in enumerate(scale_names):
                axis = axes[row, half * len(scale_names) + scale]
                axis.imshow(np.clip(np.asarray(images[row, scale]), 0, 255).astype(np.uint8))
                axis.set_xticks([])
                axis.set_yticks([])
                if row == 0:
                    axis.set_title(f"{'augmented' if half else 'original'}\n{name}", fontsize=8)
            if half == 0:
                axes[row, 0].set_ylabel(labels[row], fontsize=8)
    figure.tight_layout()
    return figure
