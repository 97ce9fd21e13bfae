"""The command line of the face cache: `python -m c3ae_utils.faces` and `c3ae cache`.

    python -m c3ae_utils.faces build-cache --dataset utkface [--max-images N]
        [--workers K | --scheduler tcp://HOST:8786]      (also `c3ae cache build-cache ...`)

Contract: `main(argv)` returns the exit status: 0 on success (the cache folder on stdout, then
its yield table); bad values and files raise ValueError / OSError, which `c3ae cache` and
`python -m c3ae_utils.faces` (both through `c3ae_utils.cli.run`) turn into one line on stderr;
Ctrl-C during a build prints what was kept and returns 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from c3ae_utils import cli as package_cli
from c3ae_utils import datasets, paths
from c3ae_utils.faces.cache_build import BuildInterrupted, build_cache
from c3ae_utils.faces.cache_files import CHUNK_SIZE, cache_name, check_cache_name, is_finished
from c3ae_utils.faces.cache_load import load_cache, yield_table


def build_parser() -> argparse.ArgumentParser:
    """The options of `c3ae cache` (`python -m c3ae_utils.faces`)."""
    parser = package_cli.ArgumentParser(prog="c3ae cache", description="Detect, align and crop faces into a cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-cache", help="preprocess a dataset into paths.cache_dir()/NAME")
    build.add_argument("--dataset", required=True, help="utkface, fgnet, wiki or imdb")
    build.add_argument("--max-images", type=int, default=None, help="a subsample of this many images")
    build.add_argument("--seed", type=int, default=0, help="seed of the split and the subsample")
    build.add_argument("--workers", type=int, default=None,
                       help="worker processes of the local Dask cluster (default: every core)")
    build.add_argument("--scheduler", default=None,
                       help="address of an existing Dask scheduler (tcp://HOST:8786) whose workers see the same files")
    build.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="images per chunk file")
    build.add_argument("--name", default=None,
                       help="cache name, a folder name under paths.cache_dir() (default: faces.cache_name)")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    """ValueError naming the option, for `build-cache` values argparse lets through."""
    if args.dataset not in datasets.LABELLED:
        problem = "has no age labels" if args.dataset in datasets.REGISTRY else "is not a known dataset"
        raise ValueError(f"--dataset {args.dataset}: {problem}; choose one of {', '.join(datasets.LABELLED)}.")
    counts = (("--max-images", args.max_images, "leave it out for every image"),
              ("--workers", args.workers, "leave it out for every core"),
              ("--chunk-size", args.chunk_size, f"the default is {CHUNK_SIZE}"))
    for option, value, default in counts:
        if value is not None and value < 1:
            raise ValueError(f"{option} {value}: give a positive number ({default}).")
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed}: give a non-negative integer (the default is 0).")
    if args.scheduler is not None and "://" not in args.scheduler:
        raise ValueError(f"--scheduler {args.scheduler}: give the scheduler's address, e.g. tcp://HOST:8786.")
    if args.name is not None:
        try:
            check_cache_name(args.name)
        except ValueError as error:
            raise ValueError(f"--name {args.name}: {error} Caches live in {paths.cache_dir()}.") from None


def _check_images_on_disk(table: pd.DataFrame, dataset: str) -> None:
    """ValueError when none of the table's images exist (IMDB-WIKI from the mirror: `.mat` only)."""
    if "image_available" in table and not table["image_available"].any():
        raise ValueError(
            f"--dataset {dataset}: none of the {len(table):,} images it lists is on disk (the data mirror holds "
            f"{dataset}.mat only). Unset {datasets.MIRROR_VARIABLE}, delete "
            f"{paths.raw_dir() / dataset} and run `c3ae data fetch {dataset}` to download the images."
        )


def _build_from_arguments(args: argparse.Namespace) -> Path:
    """`build-cache`: subsample the dataset's table, build its cache, print its yield."""
    _check_arguments(args)
    table = datasets.subsample(datasets.metadata_table(args.dataset, args.seed), args.max_images, seed=args.seed)
    _check_images_on_disk(table, args.dataset)
    name = args.name or cache_name(args.dataset, args.max_images)
    folder = build_cache(table, name, workers=args.workers, chunk_size=args.chunk_size,
                         scheduler=args.scheduler)
    if is_finished(folder):
        print(yield_table({name: load_cache(folder)}).to_string())
    return folder


def main(argv: list[str] | None = None) -> int:
    """`python -m c3ae_utils.faces build-cache ...` (also `c3ae cache ...`), run under
    `cli.run`: bad arguments and files raise ValueError / OSError (one line on stderr there);
    Ctrl-C during a build prints what was kept and returns 130."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(_build_from_arguments(args))
    except BuildInterrupted as stop:
        print(f"{parser.prog}: interrupted: {stop}", file=sys.stderr)
        return package_cli.INTERRUPTED
    return 0
