"""Figures of the datasets (notebook 01): ages by gender, the cleaning funnel, raw age
noise, faces by decade, the age imbalance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from c3ae_utils import age_encoding
from c3ae_utils.plotting.figures import new_figure


def _gender_labels(table: pd.DataFrame) -> pd.Series:
    """Gender as plain strings, "unknown" where missing (seaborn cannot group <NA>)."""
    return table["gender"].astype(object).where(table["gender"].notna(), "unknown").astype(str)


def plot_age_gender_distributions(tables: dict[str, pd.DataFrame], binwidth: int = 5) -> Figure:
    """One panel per dataset: stacked histogram of ages (years) coloured by gender."""
    figure, axes = new_figure(ncols=len(tables), width=4.6, height=3.6)
    palette = {"female": "tab:orange", "male": "tab:blue", "unknown": "tab:gray"}
    for axis, (name, table) in zip(axes[0], tables.items(), strict=True):
        data = pd.DataFrame({"age": table["age"].to_numpy(), "gender": _gender_labels(table).to_numpy()})
        sns.histplot(data, x="age", hue="gender", multiple="stack", binwidth=binwidth,
                     palette=palette, hue_order=[g for g in palette if g in set(data["gender"])],
                     ax=axis)
        axis.set(title=f"{name} ({len(table):,} images)", xlabel="age (years)", ylabel="images")
    figure.tight_layout()
    return figure


def plot_cleaning_funnel(report: pd.DataFrame, title: str = "WIKI cleaning funnel") -> Figure:
    """Horizontal bars of the rows remaining after each step of `datasets.cleaning_report`."""
    figure, axes = new_figure(width=8.0, height=0.45 * len(report) + 1.2)
    axis = axes[0, 0]
    positions = np.arange(len(report))[::-1]
    axis.barh(positions, report["remaining"], color="tab:blue")
    for position, (_, row) in zip(positions, report.iterrows(), strict=True):
        note = f"{row['remaining']:,}" + (f"  (-{row['dropped']:,})" if row["dropped"] else "")
        axis.text(row["remaining"], position, "  " + note, va="center", fontsize=9)
    axis.set_yticks(positions, report["step"])
    axis.set(title=title, xlabel="entries remaining", xlim=(0, report["remaining"].max() * 1.3))
    figure.tight_layout()
    return figure


def plot_raw_age_noise(table: pd.DataFrame, low: int = 0, high: int = 100, margin: int = 40) -> Figure:
    """Histogram of raw (uncleaned) ages with the impossible ones (< low, > high) in red."""
    ages = table["age"].to_numpy()
    figure, axes = new_figure(width=8.0, height=3.6)
    axis = axes[0, 0]
    bins = np.arange(low - margin, high + margin + 2) - 0.5
    shown = np.clip(ages, low - margin, high + margin)  # pool the far tails into the edge bins
    counts, edges = np.histogram(shown, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    impossible = (centres < low) | (centres > high)
    axis.bar(centres[~impossible], counts[~impossible], width=1.0, color="tab:blue", label="0-100")
    axis.bar(centres[impossible], counts[impossible], width=1.0, color="tab:red",
             label=f"impossible: {int((ages < low).sum()):,} below {low}, {int((ages > high).sum()):,} above {high}")
    axis.set_yscale("log")
    axis.set(xlabel=f"raw age (years; tails pooled at {low - margin} and {high + margin})",
             ylabel="entries (log scale)", title="Ages computed from the raw metadata")
    axis.legend()
    figure.tight_layout()
    return figure


def plot_faces_by_decade(table: pd.DataFrame, per_decade: int = 6, seed: int = 0,
                         size: int = 96, title: str | None = None) -> Figure:
    """A grid of faces: one row per age decade (0-9, ..., 90+), `per_decade` random images each."""
    rng = np.random.default_rng(seed)
    decades = age_encoding.decade(table["age"].to_numpy())
    labels = age_encoding.decade_labels()
    rows = sorted(set(decades.tolist()))
    figure, axes = new_figure(ncols=per_decade, nrows=len(rows), width=1.2, height=1.25)
    for row, decade in enumerate(rows):
        members = table[decades == decade]
        picked = members.iloc[np.sort(rng.permutation(len(members))[:per_decade])]
        for column in range(per_decade):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(picked):
                with Image.open(picked["path"].iloc[column]) as image:
                    thumb = ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), (size, size))
                axis.imshow(np.asarray(thumb))
                axis.set_title(f"{picked['age'].iloc[column]}", fontsize=8)
        axes[row, 0].text(-0.1, 0.5, labels[decade], transform=axes[row, 0].transAxes, ha="right",
                          va="center", fontsize=10)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_age_imbalance(counts: pd.DataFrame) -> Figure:
    """Share of images per age bin (rows: bin labels, columns: datasets), log scale."""
    shares = counts / counts.sum() * 100
    figure, axes = new_figure(width=9.0, height=3.8)
    axis = axes[0, 0]
    shares.plot.bar(ax=axis, width=0.8, logy=True)
    axis.set(xlabel="age bin (years)", ylabel="share of images (%, log scale)",
             title="Images per 10-year age bin")
    axis.tick_params(axis="x", rotation=0)
    figure.tight_layout()
    return figure
