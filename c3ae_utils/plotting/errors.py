"""Figures of the error analysis (notebook 06): cumulative scores, errors by age and by
group, the worst predictions, the W1 bin confusion, W2, several models side by side,
FG-NET leave-one-subject-out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from c3ae_utils.plotting.figures import new_figure


def plot_cumulative_scores(curves: dict[str, pd.Series], title: str = "Cumulative score") -> Figure:
    """CS(theta) curves, one line per model: `curves[name]` is indexed by theta (years)."""
    figure, axes = new_figure(width=6.0, height=4.0)
    axis = axes[0, 0]
    for name, curve in curves.items():
        axis.plot(curve.index, curve.to_numpy(), marker="o", label=name)
    axis.set(xlabel="error threshold theta (years)", ylabel="CS(theta): fraction with |error| <= theta",
             ylim=(0, 1.02), title=title)
    axis.grid(alpha=0.3)
    axis.legend()
    return figure


def plot_error_by_age(tables: dict[str, pd.DataFrame], column: str = "predicted_age") -> Figure:
    """Left: predicted vs true age (scatter, identity line); right: mean signed error per
    year of age (the bias; below zero for the old = regression to the mean). `tables[name]`
    needs the columns `age` and `column` (years)."""
    figure, axes = new_figure(ncols=2, width=5.5, height=4.5)
    scatter, bias = axes[0, 0], axes[0, 1]
    top = max(float(t[["age", column]].to_numpy().max()) for t in tables.values())
    for name, table in tables.items():
        scatter.scatter(table["age"], table[column], s=6, alpha=0.4, label=name)
        signed = (table[column] - table["age"]).groupby(table["age"].round().astype(int)).mean()
        years = signed.reindex(range(signed.index.min(), signed.index.max() + 1))  # NaN where no face
        smooth = years.rolling(5, center=True, min_periods=1).mean().dropna()
        bias.plot(smooth.index, smooth.to_numpy(), label=name)
    scatter.plot([0, top], [0, top], color="black", linewidth=1, label="perfect")
    scatter.set(xlabel="true age (years)", ylabel="predicted age (years)", title="Predicted vs true")
    bias.axhline(0, color="black", linewidth=1)
    bias.set(xlabel="true age (years)", ylabel="mean signed error (years)",
             title="Bias by age (5-year moving mean)")
    for axis in (scatter, bias):
        axis.grid(alpha=0.3)
        axis.legend()
    return figure


def plot_grouped_errors(groups: dict[str, pd.DataFrame], title: str = "MAE by group") -> Figure:
    """One bar panel per grouping (`groups[name]` = `evaluation.grouped_errors` output:
    `count`, `mae`, `bias`), bars = MAE (years), labelled with the group size."""
    figure, axes = new_figure(ncols=max(1, len(groups)), width=4.5, height=3.8)
    for axis, (name, table) in zip(axes[0], groups.items(), strict=False):
        labels = [str(label) for label in table.index]
        bars = axis.bar(labels, table["mae"], color="tab:blue", alpha=0.8, label="MAE")
        axis.plot(labels, table["bias"], "o", color="tab:red", label="bias")
        axis.bar_label(bars, labels=[f"n={int(n)}" for n in table["count"]], fontsize=8)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set(title=name, ylabel="years")
        axis.tick_params(axis="x", rotation=45)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_worst_predictions(crops: np.ndarray, table: pd.DataFrame, bin_values: np.ndarray,
                           scale: int = 1, ncols: int = 6) -> Figure:
    """A gallery: for each row of `table` (columns `cache_index`, `age`, `predicted_age`,
    `expected_age`, `p00`..), crop `scale` of `crops` uint8 `[n, 3, 64, 64, 3]` (RGB) above
    its predicted distribution over the bins (years), with the true age marked."""
    count = len(table)
    nrows = max(1, -(-count // ncols))
    figure, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 3.6 * nrows), squeeze=False)
    figure.subplots_adjust(hspace=1.1, wspace=0.25, bottom=0.25 / nrows)
    probability_columns = [c for c in table.columns if len(c) == 3 and c[0] == "p" and c[1:].isdigit()]
    width = float(bin_values[1] - bin_values[0]) if len(bin_values) > 1 else 1.0
    for position, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if position >= count:
            continue
        row = table.iloc[position]
        axis.imshow(crops[int(row["cache_index"]), scale])
        axis.set_title(f"true {row['age']:.0f} | pred {row['predicted_age']:.1f}\n"
                       f"expected {row['expected_age']:.1f}", fontsize=8)
        bars = axis.inset_axes([0.0, -0.75, 1.0, 0.6])  # the distribution, just below the face
        bars.bar(bin_values, row[probability_columns].to_numpy(dtype=float), width=0.8 * width)
        bars.axvline(row["age"], color="tab:green", label="true")
        bars.axvline(row["predicted_age"], color="tab:red", linestyle="--", label="pred")
        bars.set_ylim(0, 1)
        bars.set_xlabel("bin (years)", fontsize=7)
        bars.tick_params(labelsize=6)
        if position == 0:
            bars.legend(fontsize=6)
    return figure


def plot_bin_confusion(matrix: np.ndarray, bin_values: np.ndarray, title: str = "W1 bin confusion") -> Figure:
    """Heat map of `matrix` int `[bins, bins]` (rows: true dominant bin, columns: argmax
    bin), each row normalised to fractions; bins labelled by their value in years."""
    counts = np.asarray(matrix, dtype=float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = [f"{value:g}" for value in bin_values]
    figure, axes = new_figure(width=6.5, height=5.5)
    sns.heatmap(rows, ax=axes[0, 0], cmap="viridis", vmin=0, vmax=1, square=True,
                xticklabels=labels, yticklabels=labels, cbar_kws={"label": "fraction of the row"})
    axes[0, 0].set(xlabel="argmax bin of W1 (years)", ylabel="true dominant bin (years)", title=title)
    return figure


def plot_w2(tables: dict[str, pd.DataFrame]) -> Figure:
    """The learned W2 kernel (years per unit of bin probability) against the bin values,
    one line per model (`tables[name]` = `evaluation.w2_comparison` output)."""
    figure, axes = new_figure(width=6.0, height=4.5)
    axis = axes[0, 0]
    reference = next(iter(tables.values()))["bin_value"]
    axis.plot(reference, reference, color="black", linewidth=1, label="bin values (paper)")
    for name, table in tables.items():
        axis.plot(table["bin_value"], table["learned"], marker="o",
                  label=f"{name} (bias {table.attrs.get('bias', 0.0):.1f})")
    axis.set(xlabel="bin value (years)", ylabel="learned W2 weight (years)", title="W2: learned vs bin values")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def plot_loso_folds(folds: pd.DataFrame) -> Figure:
    """Leave-one-subject-out on FG-NET: MAE per held-out subject (years) before and after
    fine-tuning (`folds` columns `subject`, `mae_before`, `mae`)."""
    figure, axes = new_figure(width=max(5.0, 0.25 * len(folds) + 2.0), height=3.8)
    axis = axes[0, 0]
    positions = np.arange(len(folds))
    axis.bar(positions - 0.2, folds["mae_before"], width=0.4, label="before fine-tuning")
    axis.bar(positions + 0.2, folds["mae"], width=0.4, label="after fine-tuning")
    axis.axhline(folds["mae"].mean(), color="tab:orange", linestyle="--",
                 label=f"mean after: {folds['mae'].mean():.2f}")
    axis.set_xticks(positions, folds["subject"].astype(str), rotation=90, fontsize=7)
    axis.set(xlabel="held-out subject", ylabel="MAE (years)", title="FG-NET leave-one-subject-out")
    axis.legend(fontsize=8)
    return figure


def plot_model_comparison(summary: pd.DataFrame, columns: tuple[str, ...] = ("MAE (age head)", "MAE (expected age)"),
                          title: str = "Models on the same faces") -> Figure:
    """Horizontal bars of each model's (the rows of `summary`) errors in years, one bar per
    column of `columns`, each labelled with its value."""
    figure, axes = new_figure(width=7.5, height=0.4 * len(summary) * len(columns) + 1.4)
    axis = axes[0, 0]
    height = 0.8 / len(columns)
    positions = np.arange(len(summary))[::-1]
    for index, column in enumerate(columns):
        values = summary[column].astype(float).to_numpy()
        bars = axis.barh(positions + (len(columns) / 2 - index - 0.5) * height, values, height=height, label=column)
        axis.bar_label(bars, [f"{value:.2f}" for value in values], padding=3, fontsize=8)
    axis.set_yticks(positions, summary.index)
    axis.set(xlabel="years", title=title, xlim=(0, float(summary[list(columns)].to_numpy().max()) * 1.15))
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure
