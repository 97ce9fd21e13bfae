"""Every figure of the course. Each function returns its `matplotlib.figure.Figure`;
`save_figure` writes one to `figures/generated/` (or `C3AE_FIGURES_DIR`).

Contributors: add functions at the end of this file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

# A headless default so the package plots on CI and servers; notebooks still show inline.
if matplotlib.get_backend().lower() not in {"agg", "module://matplotlib_inline.backend_inline"}:
    try:
        import IPython  # noqa: F401  (inside a notebook the inline backend is already set)
    except ImportError:
        matplotlib.use("Agg")
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from c3ae_utils import age_encoding, paths  # noqa: E402


def save_figure(figure: Figure, name: str, dpi: int = 120) -> Path:
    """Save `figure` as `<figures_dir>/<name>.png` and return the path."""
    if not name or "/" in name:
        raise ValueError(f"Figure name must be a plain file stem, got {name!r}.")
    target = paths.ensure_dir(paths.figures_dir()) / f"{name}.png"
    figure.savefig(target, dpi=dpi, bbox_inches="tight")
    return target


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 4.0):
    """A figure with a grid of axes, sized `width` x `height` inches per panel."""
    figure, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return figure, axes


# --------------------------------------------------------------------------- error analysis (notebook 06)


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


# --- datasets (notebook 01) ---------------------------------------------------------------


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


# --- the model (notebook 04) --------------------------------------------------------------


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


# --- notebook 03: age encodings and augmented batches -----------------------------------


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


# --- faces (notebook 02) -------------------------------------------------------------------

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
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
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
