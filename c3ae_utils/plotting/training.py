"""Figures of training (notebook 05): the focal loss and its bin weights, learning
curves, validation MAE by age."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from c3ae_utils.plotting.figures import new_figure


def plot_bin_weights(frequencies: np.ndarray, weights: np.ndarray, bin_values: np.ndarray,
                     title: str = "Training faces per bin and focal-loss weights") -> Figure:
    """Bars: share of the training label mass per bin (`float [num_bins]`, sums to 1, log
    scale); line on a second axis: the class-balancing weight of each bin in the focal loss."""
    figure, axes = new_figure(width=8.0, height=3.8)
    axis = axes[0, 0]
    width = 0.8 * (bin_values[1] - bin_values[0])
    axis.bar(bin_values, np.maximum(np.asarray(frequencies) * 100, 1e-2), width=width, color="C0",
             label="label mass (%)")
    axis.set_yscale("log")
    axis.set(xlabel="bin (years)", ylabel="share of training label mass (%, log)", title=title)
    axis.set_xticks(bin_values)
    twin = axis.twinx()
    twin.plot(bin_values, weights, "o-", color="C3", label="focal weight")
    twin.set_ylabel("focal-loss weight", color="C3")
    twin.set_ylim(0, max(float(np.max(weights)) * 1.1, 1.5))
    figure.legend(loc="upper center", ncols=2, bbox_to_anchor=(0.5, 0.0))
    figure.tight_layout()
    return figure


def plot_focal_vs_cross_entropy(gammas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0)) -> Figure:
    """Loss of one bin, `-(1 - p) ** gamma * log(p)`, against the predicted probability p of
    that (target) bin; gamma = 0 is the cross-entropy."""
    probability = np.linspace(0.01, 1.0, 200)
    figure, axes = new_figure(width=6.0, height=4.0)
    axis = axes[0, 0]
    for gamma in gammas:
        label = "cross-entropy (gamma 0)" if gamma == 0 else f"focal, gamma {gamma:g}"
        axis.plot(probability, -((1 - probability) ** gamma) * np.log(probability), label=label)
    axis.set(xlabel="predicted probability of the target bin", ylabel="loss",
             title="Focal loss down-weights easy, well-predicted bins", ylim=(0, 4.7))
    axis.grid(alpha=0.3)
    axis.legend()
    return figure


def plot_learning_curves(histories: dict[str, pd.DataFrame],
                         metrics: tuple[str, ...] = ("age_mae", "distribution_expected_mae"),
                         titles: tuple[str, ...] = ("Age head: MAE", "Distribution head: expected-age MAE"),
                         ) -> Figure:
    """One panel per metric (years per epoch): training (dashed) and validation (solid) of each
    run. `histories[name]` is a run's `history.csv` (columns `epoch`, `<metric>`, `val_<metric>`)."""
    figure, axes = new_figure(ncols=len(metrics), width=5.5, height=4.0)
    for axis, metric, title in zip(axes[0], metrics, titles, strict=True):
        for index, (name, history) in enumerate(histories.items()):
            axis.plot(history["epoch"], history[metric], "--", color=f"C{index}", label=f"{name} train")
            axis.plot(history["epoch"], history[f"val_{metric}"], "-o", markersize=3, color=f"C{index}",
                      label=f"{name} validation")
        axis.set(xlabel="epoch", ylabel="years", title=title)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def plot_mae_by_age_bin(predictions: dict[str, pd.DataFrame], bin_width: int = 10,
                        column: str = "predicted_age") -> Figure:
    """Grouped bars: validation MAE (years) per true-age bin of `bin_width` years for each run;
    `predictions[name]` needs `age` and `column`. Bin labels give the number of faces."""
    figure, axes = new_figure(width=9.0, height=3.8)
    axis = axes[0, 0]
    names = list(predictions)
    first = next(iter(predictions.values()))
    bins = (first["age"] // bin_width * bin_width).astype(int)
    labels = sorted(bins.unique())
    bar_width = 0.8 / max(len(names), 1)
    for index, name in enumerate(names):
        table = predictions[name]
        errors = (table[column] - table["age"]).abs().groupby(table["age"] // bin_width * bin_width).mean()
        positions = np.arange(len(labels)) + (index - (len(names) - 1) / 2) * bar_width
        axis.bar(positions, errors.reindex(labels).to_numpy(), width=bar_width, label=name, color=f"C{index}")
    counts = bins.value_counts()
    axis.set_xticks(np.arange(len(labels)), [f"{b}-{b + bin_width - 1}\n({counts[b]})" for b in labels])
    axis.set(xlabel="true age (years) and (faces)", ylabel="MAE (years)", title="Validation MAE by age")
    axis.grid(alpha=0.3, axis="y")
    axis.legend()
    figure.tight_layout()
    return figure
