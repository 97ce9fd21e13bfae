"""The command line of the datasets: `python -m c3ae_utils.datasets` and `c3ae data`.

    python -m c3ae_utils.datasets list                 # the registry
    python -m c3ae_utils.datasets fetch utkface        # download (or copy from the mirror) and extract
    python -m c3ae_utils.datasets check-access wiki    # fail fast when the data cannot be obtained

Contract: `main(argv)` returns the exit status: 0 on success; 1 when `check-access` finds
the dataset out of reach (the reason, with the fixes, goes to stderr); argparse exits with 2 on
bad arguments. `fetch` prints the dataset folder on stdout; when it cannot obtain the dataset
it raises ValueError / OSError, which `c3ae data` and `python -m c3ae_utils.datasets` (both
through `c3ae_utils.cli.run`) turn into one line on stderr, `c3ae data: error: ...`, and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from c3ae_utils import cli as package_cli
from c3ae_utils.datasets.fetching import check_access, fetch, is_complete
from c3ae_utils.datasets.registry import REGISTRY, DatasetSpec

DESCRIPTION = "The datasets of the course: registry, download, extraction, parsers, cleaning and splits."


def _describe(spec: DatasetSpec) -> str:
    """One line of `list`: name, title, download size (MB) and whether it is extracted."""
    size = f"{spec.download_size / 1e6:,.1f} MB" if spec.download_size else "size unpublished"
    state = "extracted" if is_complete(spec.name) else "not extracted"
    return f"{spec.name:10s} {spec.title} [{size}; {state}]"


def build_parser() -> argparse.ArgumentParser:
    """The `list`, `fetch NAME` and `check-access NAME [--timeout S]` commands."""
    parser = package_cli.ArgumentParser(prog="c3ae data", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show the registry")
    fetch_parser = commands.add_parser("fetch", help="download (or copy from the mirror) and extract")
    fetch_parser.add_argument("name", choices=sorted(REGISTRY))
    access = commands.add_parser("check-access", help="exit 1 when the dataset cannot be obtained")
    access.add_argument("name", choices=sorted(REGISTRY))
    access.add_argument("--timeout", type=float, default=5.0, help="seconds per URL probe")
    return parser


def _list() -> int:
    """Print the registry, one dataset a line."""
    for spec in REGISTRY.values():
        print(_describe(spec))
    return 0


def _check_access(name: str, timeout: float) -> int:
    """Print whether `name` can be obtained (stderr when not); 0 if it can, else 1."""
    ok, message = check_access(name, timeout=timeout)
    print(message if ok else f"error: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def _fetch(name: str) -> int:
    """Fetch `name` and print its folder (errors propagate to `cli.run`: one line, exit 1)."""
    print(fetch(name))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m c3ae_utils.datasets {list,fetch,check-access} [NAME]` (also `c3ae data`)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "list":
        return _list()
    if args.command == "check-access":
        return _check_access(args.name, args.timeout)
    return _fetch(args.name)
