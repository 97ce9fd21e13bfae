"""The course's results table: every run in `paths.runs_dir()`, the shipped and reference
models, notebook 06's FG-NET numbers and the published ones, as `artifacts/results.{md,csv}`
and the section of `docs/results.md` between its results markers.

    python -m c3ae_utils.evaluation results [--split test] [--no-reference] [--page PATH]

A run's row comes from its own `config.json`, never from its name; runs whose settings
agree (`SETTING_KEYS`, whatever their seed) are one row, mean ± std over their seeds.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from c3ae_utils import cli, faces, network, paths
from c3ae_utils.evaluation.model_evaluation import Evaluation, evaluate

logger = logging.getLogger(__name__)

SETTING_KEYS = ("dataset", "max_images", "loss", "epochs", "use_se")  # what a setting is; never the seed
PAGE_START = "<!-- results:start -->"
PAGE_END = "<!-- results:end -->"
# Published numbers (MAE in years), each with its source and protocol. Never measured here.
PUBLISHED: tuple[dict[str, Any], ...] = (
    {"model": "C3AE paper", "dataset": "IMDB", "mae": 6.57,
     "protocol": "IMDB-WIKI train/test split (paper, Zhang et al. CVPR 2019)"},
    {"model": "C3AE paper", "dataset": "WIKI", "mae": 6.44,
     "protocol": "IMDB-WIKI train/test split (paper, Zhang et al. CVPR 2019)"},
    {"model": "C3AE paper", "dataset": "MORPH II", "mae": 2.75,
     "protocol": "MORPH II, pre-trained on IMDB-WIKI (paper)"},
    {"model": "C3AE paper", "dataset": "FG-NET", "mae": 2.95,
     "protocol": "FG-NET leave-one-subject-out, pre-trained on IMDB-WIKI (paper)"},
    {"model": "reference v84 (focal)", "dataset": "IMDB", "mae": 6.77,
     "protocol": "random 70/30 split of IMDB (StevenBanama/C3AE README)"},
    {"model": "reference v84 (focal)", "dataset": "WIKI", "mae": 6.74,
     "protocol": "random 70/30 split of WIKI (StevenBanama/C3AE README)"},
    {"model": "reference v89 (focal + SE)", "dataset": "IMDB", "mae": 6.58,
     "protocol": "random 70/30 split of IMDB (StevenBanama/C3AE README)"},
    {"model": "reference v90 (focal + SE + white norm)", "dataset": "IMDB", "mae": 6.53,
     "protocol": "random 70/30 split of IMDB (StevenBanama/C3AE README; weights not published)"},
    {"model": "SSR-Net (0.32 MB)", "dataset": "IMDB", "mae": 6.96,
     "protocol": "IMDB-WIKI split (as cited by the C3AE paper)"},
    {"model": "SSR-Net (0.32 MB)", "dataset": "WIKI", "mae": 6.77,
     "protocol": "IMDB-WIKI split (as cited by the C3AE paper)"},
    {"model": "SSR-Net (0.32 MB)", "dataset": "MORPH II", "mae": 3.16,
     "protocol": "MORPH II (as cited by the C3AE paper)"},
)


def results_page() -> Path:
    """The page `make results` refreshes: `docs/results.md` of the checkout."""
    return paths.repo_root() / "docs" / "results.md"


def find_runs(runs_dir: Path | None = None) -> list[Path]:
    """Run folders holding a trained model (`best.keras`) that did not fail, sorted by name."""
    folder = runs_dir or paths.runs_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and (p / "best.keras").exists() and network.run_failure(p) is None)


def _describe_run(config: dict[str, Any]) -> dict[str, Any]:
    """Setting, loss, SE, data size, epochs, seed and the training command of a run, read
    from its own `config.json` (never from its name)."""
    settings = {key: config[key] for key in SETTING_KEYS if key in config}
    train_on_val = bool(config.get("train_on_val"))
    if train_on_val:  # named only when on: runs from before the setting existed group as before
        settings["train_on_val"] = True
    arguments = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    return {
        "setting": "-".join(str(value) for key, value in settings.items() if key in ("dataset", "loss"))
        + ("" if config.get("use_se", True) else "-no-se") + ("-trainval" if train_on_val else ""),
        "loss": config.get("loss", "?"), "se": config.get("use_se"),
        "epochs": config.get("epochs"),
        "seed": config.get("seed"),
        "command": f"`training.train(TrainConfig({arguments}))`" if arguments else "?",
        "dataset": config.get("dataset", "?"), "cache": config.get("cache_name"),
        "key": arguments,
    }


def results_rows(split: str = "test", batch_size: int = 256, reference: bool = True) -> pd.DataFrame:
    """Evaluate every run in `paths.runs_dir()` (and the reference weights) on its cache's
    `split` (falling back to "val" when the cache has no test rows); one row per run."""
    rows: list[dict[str, Any]] = []
    caches: dict[str, Any] = {}
    for folder in tqdm(find_runs(), desc="runs", unit="run"):
        info = _describe_run(paths.read_json(folder / "config.json", missing_ok=True))
        if not info["cache"]:
            logger.warning("Run %s names no cache in config.json; skipped.", folder.name)
            continue
        cache = caches.setdefault(info["cache"], faces.load_cache(info["cache"]))
        used = _available_split(cache.table, split)
        rows.append(_result_row(folder.name, info, evaluate(folder, cache, used, batch_size), used, cache))
    if caches:
        rows.extend(_shipped_rows(caches, split, batch_size))
    if reference and caches:
        rows.extend(_reference_rows(caches, split, batch_size))
    return pd.DataFrame(rows)


def _available_split(table: pd.DataFrame, split: str) -> str:
    """`split` when the table has rows in it, else "val" (caches split without a test part)."""
    return split if "split" in table and (table["split"] == split).any() else "val"


def _result_row(name: str, info: dict[str, Any], evaluation: Evaluation, split: str, cache: Any) -> dict[str, Any]:
    """One row of `results_rows`: the run's description and its scores (MAE in years)."""
    dataset = str(cache.table["dataset"].iloc[0]) if "dataset" in cache.table else info["dataset"]
    return {
        "run": name, **info,
        "test_data": f"{dataset} {split} split", "n": evaluation.metrics["count"],
        "mae": evaluation.metrics["mae"], "mae_expected": evaluation.metrics["mae_expected"],
        "cs5": evaluation.metrics["cs"]["5"],
    }


def _shipped_rows(caches: dict[str, Any], split: str, batch_size: int) -> list[dict[str, Any]]:
    """The course's shipped models (`models/`), on the first run's cache, with the training
    command their model card records."""
    cache = next(iter(caches.values()))
    used = _available_split(cache.table, split)
    rows = []
    for label in network.SHIPPED_WEIGHTS:
        try:
            weights = network.shipped_weights_path(label)
        except FileNotFoundError as error:
            logger.warning("%s; its row is skipped.", error)
            continue
        card = paths.read_json(weights.with_suffix(".json"), missing_ok=True)
        info = {**_describe_run(card.get("training", {})), "setting": f"{label} (shipped, models/)", "key": label,
                "command": f"`{card.get('training_command', '?')}`, then `make release`"
                + (" (flip averaging inside)" if card.get("flip_averaging") else "")}
        rows.append(_result_row(label, info, evaluate(weights, cache, used, batch_size, name=label), used, cache))
    return rows


def _reference_rows(caches: dict[str, Any], split: str, batch_size: int) -> list[dict[str, Any]]:
    """The reference weights, evaluated through our pipeline on the first run's cache."""
    cache = next(iter(caches.values()))
    used = _available_split(cache.table, split)
    rows = []
    for label in network.REFERENCE_WEIGHTS:
        try:
            weights = network.reference_weights_path(label)
        except (OSError, ValueError) as error:  # the table is still useful without them
            logger.warning("Reference weights unavailable (%s); rows skipped.", error)
            return rows
        evaluation = evaluate(weights, cache, used, batch_size, name=label)
        info = {"setting": label, "loss": "focal", "se": label == "reference-v89",
                "epochs": None, "seed": None, "key": label,
                "command": "network.load_reference_h5 (trained on IMDB-WIKI by the reference)",
                "dataset": "imdb-wiki", "cache": "IMDB-WIKI (the reference's own training)"}
        rows.append(_result_row(label, info, evaluation, used, cache))
    return rows


def aggregate_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (runs whose configs agree on `SETTING_KEYS`, whatever their seed
    or name): the mean and std over its runs of `mae`, `mae_expected`, `cs5`, and the seeds."""
    if rows.empty:
        return rows
    keys = ["key", "setting", "loss", "se", "cache", "test_data", "command"]
    frame = rows.assign(se=rows["se"].astype(str))
    grouped = frame.groupby(keys, sort=False, dropna=False)
    return grouped.agg(
        runs=("run", "size"), n=("n", "first"), epochs=("epochs", "first"),
        seeds=("seed", lambda seeds: ", ".join(str(int(s)) for s in seeds if pd.notna(s)) or "-"),
        mae_mean=("mae", "mean"), mae_std=("mae", "std"),
        mae_expected_mean=("mae_expected", "mean"), mae_expected_std=("mae_expected", "std"),
        cs5_mean=("cs5", "mean"),
    ).reset_index()


def _format_mae(mean: float, std: float, runs: int) -> str:
    """"mean ± std" (years) over several runs, or the mean alone."""
    return f"{mean:.2f} ± {std:.2f}" if runs > 1 and math.isfinite(std) else f"{mean:.2f}"


def results_markdown(aggregated: pd.DataFrame, extra: dict[str, Any] | None = None) -> str:
    """The Markdown results table: our settings (mean ± std over seeds), the FG-NET results
    of notebook 06 when present, then the published numbers with their protocols."""
    lines = [
        "| model | loss | SE | tested on | MAE (age head) | MAE (expected age) | CS(5) | runs (seeds) | trained on (cache) | produced by |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for row in aggregated.itertuples(index=False):
        lines.append(
            f"| {row.setting} | {row.loss} | {row.se} | {row.test_data} (n={row.n}) | "
            f"{_format_mae(row.mae_mean, row.mae_std, row.runs)} | "
            f"{_format_mae(row.mae_expected_mean, row.mae_expected_std, row.runs)} | "
            f"{row.cs5_mean:.3f} | {row.runs} ({row.seeds}) | {row.cache} | {row.command} |"
        )
    for item in (extra or {}).get("fgnet", []):
        expected = item.get("mae_expected")
        lines.append(
            f"| {item['model']} | - | - | {item['protocol']} (n={item['n']}) | {item['mae']:.2f} | "
            f"{'-' if expected is None else f'{expected:.2f}'} | - | 1 | {item['cache']} | {item['command']} |"
        )
    lines += ["", "Published numbers (not measured here):", "",
              "| model | dataset | MAE | protocol |", "| --- | --- | ---: | --- |"]
    lines += [f"| {p['model']} | {p['dataset']} | {p['mae']:.2f} | {p['protocol']} |" for p in PUBLISHED]
    return "\n".join(lines) + "\n"


def fgnet_rows_from_notebook(metrics_path: Path | None = None) -> list[dict[str, Any]]:
    """FG-NET cross-dataset and leave-one-subject-out rows from notebook 06's metrics file."""
    data = paths.read_json(metrics_path or paths.metrics_path("error_analysis"), missing_ok=True)
    if not data:
        return []
    parameters = data.get("parameters", {})
    trained_on = faces.cache_name(parameters.get("DATASET", "utkface"), parameters.get("MAX_IMAGES"))
    shown = ", ".join(f"{key}={value!r}" for key, value in parameters.items() if key in ("MAX_IMAGES", "NUM_FOLDS", "FINE_TUNE_EPOCHS"))
    command = f"notebooks/06_error_analysis.ipynb ({shown})"
    rows = []
    for name, metrics in data.get("cross_dataset", {}).items():
        rows.append({"model": name, "protocol": "FG-NET, all faces, no fine-tuning (cross-dataset)",
                     "n": metrics["count"], "mae": metrics["mae"], "mae_expected": metrics["mae_expected"],
                     "cache": trained_on, "command": command})
    loso = data.get("loso")
    if loso:
        # The paper's number is the mean over folds; the MAE over all test faces and the
        # folds' mean before fine-tuning are given beside it.
        rows.append({"model": loso["model"],
                     "protocol": f"FG-NET leave-one-subject-out, {loso['num_folds']} folds, "
                                 f"{loso['epochs']} fine-tuning epochs; mean over folds (over faces: "
                                 f"{loso['face_mae']:.2f}; before fine-tuning: {loso['mean_mae_before']:.2f})",
                     "n": sum(f["n_test"] for f in loso["folds"]), "mae": loso["mean_mae"],
                     "cache": trained_on, "command": command})
    return rows


def refresh_page(markdown: str, page: Path | None = None) -> bool:
    """Replace the text between the results markers of `page` (default `results_page()`);
    True if it was refreshed. Nothing else in the page is touched; without both markers
    nothing is written."""
    path = page or results_page()
    if not path.exists():
        return False
    text = path.read_text()
    start, end = text.find(PAGE_START), text.find(PAGE_END)
    if start < 0 or end < start:
        return False
    updated = text[: start + len(PAGE_START)] + "\n" + markdown + text[end:]
    if updated != text:
        path.write_text(updated)
    return True


def write_results(split: str = "test", batch_size: int = 256, reference: bool = True,
                  page: Path | None = None, refresh: bool = True) -> dict[str, Path]:
    """Evaluate the runs, write `artifacts/results.md` and `artifacts/results.csv`, and (with
    `refresh`) the section of `page` (default `docs/results.md`) between the results markers;
    return the paths written ("markdown", "csv", and "page" when it was refreshed)."""
    rows = results_rows(split, batch_size, reference)
    if rows.empty:
        raise FileNotFoundError(
            f"No trained runs in {paths.runs_dir()}: run notebook 05 or `c3ae train` first."
        )
    markdown = (
        f"Generated by `make results` (`python -m c3ae_utils.evaluation results --split {split}`) "
        f"on {time.strftime('%Y-%m-%d')} from the runs in `artifacts/runs/`; MAE in years, mean ± std "
        "over seeds where a setting has several runs.\n\n"
        + results_markdown(aggregate_seeds(rows), {"fgnet": fgnet_rows_from_notebook()})
    )
    target = paths.ensure_dir(paths.artifacts_dir())
    written = {"markdown": target / "results.md", "csv": target / "results.csv"}
    written["markdown"].write_text(markdown)
    rows.to_csv(written["csv"], index=False)
    if refresh and refresh_page(markdown, page):
        written["page"] = page or results_page()
    return written


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = cli.ArgumentParser(prog="python -m c3ae_utils.evaluation", description="The course's results table.")
    commands = parser.add_subparsers(dest="command", required=True)
    results = commands.add_parser("results", help="write artifacts/results.{md,csv} and refresh docs/results.md")
    results.add_argument("--split", default="test", choices=["val", "test"])
    results.add_argument("--batch-size", type=int, default=256)
    results.add_argument("--no-reference", action="store_true", help="skip the reference weights")
    results.add_argument("--page", type=Path, default=None,
                         help="page whose results section to refresh (default: the repo's docs/results.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m c3ae_utils.evaluation results [--split test] [--no-reference] [--page PATH]`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        written = write_results(args.split, args.batch_size, not args.no_reference, args.page)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0
