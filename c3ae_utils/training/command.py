"""The command line of training: `c3ae train ...` and `python -m c3ae_utils.training ...`
(`build_parser`, one option per `TrainConfig` field a person sets; `main`). After Ctrl-C it
says what the run folder kept and the command that resumes it."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import signal
import sys
from collections.abc import Callable, Sequence

from c3ae_utils import cli, datasets, paths
from c3ae_utils.faces.cache import check_cache_name
from c3ae_utils.losses import LOSSES
from c3ae_utils.training import fit
from c3ae_utils.training.config import SCHEDULES, TrainConfig, check_run_name
from c3ae_utils.training.runs import run_dir


def _integer_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type`: an integer >= `minimum` (else a usage error naming the option)."""

    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1  # not an integer: reported like one out of range
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {text!r}")
        return value

    return integer


def _number_above(minimum: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse `type`: a finite number > `minimum` (>= when `inclusive`)."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # not a number: reported like one out of range
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(
                f"must be a number {'>=' if inclusive else '>'} {minimum:g}; got {text!r}"
            )
        return value

    return number


def _verbosity_argument(text: str) -> int | str:
    """An argparse `type` for --verbose: 0, 1, 2 or auto."""
    if text not in ("0", "1", "2", "auto"):
        raise argparse.ArgumentTypeError(f"must be 0, 1, 2 or auto; got {text!r}")
    return text if text == "auto" else int(text)


def _run_name_argument(text: str) -> str:
    """An argparse `type` for --run-name: a plain folder name (`check_run_name`)."""
    try:
        return check_run_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """The options of `c3ae train`, one per `TrainConfig` field that a person sets."""
    defaults = TrainConfig()
    parser = cli.ArgumentParser(
        prog="c3ae train", description="Train C3AE on a face cache; writes artifacts/runs/<name>/."
    )
    add = parser.add_argument
    positive, non_negative = _integer_at_least(1), _integer_at_least(0)
    add("--dataset", choices=datasets.LABELLED, default=defaults.dataset,
        help="dataset of the face cache (default utkface)")
    add("--max-images", type=positive, default=None, help="use the cache built from this many images")
    add("--cache-name", default=None, help="explicit face-cache name (overrides the two above)")
    add("--run-name", type=_run_name_argument, default=None,
        help="run folder name (default <dataset>-<loss>[-<max-images>])")
    add("--loss", choices=LOSSES, default=defaults.loss, help="distribution loss")
    add("--loss-weight", type=_number_above(0, inclusive=True), default=defaults.loss_weight,
        help="lambda of the cascade loss")
    add("--epochs", type=positive, default=defaults.epochs)
    add("--batch-size", type=positive, default=defaults.batch_size)
    add("--learning-rate", type=_number_above(0, inclusive=False), default=defaults.learning_rate)
    add("--schedule", choices=SCHEDULES, default=defaults.schedule)
    add("--patience", type=non_negative, default=defaults.patience, help="early stopping; 0: off")
    add("--seed", type=non_negative, default=defaults.seed)
    add("--train-on-val", action="store_true",
        help="also train on the validation split (the final model: needs --patience 0; keeps the last epoch)")
    add("--no-augment", dest="augment", action="store_false")
    add("--no-se", dest="use_se", action="store_false", help="no squeeze-and-excitation blocks")
    add("--no-white-norm", dest="white_norm", action="store_false")
    add("--fixed-w2", dest="learn_w2", action="store_false", help="W2 fixed to the bin values")
    add("--w2-init", choices=("bins", "random"), default=defaults.w2_init)
    add("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
        help="float16 compute (default: on with a GPU)")
    add("--jit-compile", action="store_true", help="compile the train step with XLA")
    add("--resume", action="store_true",
        help="continue an interrupted run of the same name and settings (one that never "
        "finished an epoch starts again)")
    add("--overwrite", action="store_true", help="delete an earlier run of the same name")
    add("--verbose", type=_verbosity_argument, default="auto", help="Keras fit verbosity: 0, 1, 2 or auto")
    return parser


def _resume_command(argv: Sequence[str]) -> str:
    """`c3ae train` with `argv` plus --resume, less --overwrite (it would delete what was kept)."""
    # argparse also accepts unambiguous abbreviations (`--over`): drop those too.
    kept = [word for word in argv
            if not (len(word) > 2 and any(flag.startswith(word) for flag in ("--resume", "--overwrite")))]
    return shlex.join(["c3ae", "train", *kept, "--resume"])


def _interrupted_report(config: TrainConfig, argv: Sequence[str]) -> str:
    """What the run folder of `config` kept and the command that continues it (after Ctrl-C)."""
    folder = run_dir(config.resolved().run_name)
    command = _resume_command(argv)
    try:
        epoch = int(paths.read_json(folder / "resume.json", ("epoch",))["epoch"])
    except (OSError, ValueError, TypeError):  # no epoch recorded (or an unreadable record)
        epoch = 0
    if epoch:
        return f"{folder} keeps epoch {epoch} of {config.epochs} (last.keras); continue it with `{command}`."
    return f"no epoch of run {folder.name} finished, nothing to keep; start it again with `{command}`."


def main(argv: Sequence[str] | None = None) -> int:
    """`c3ae train ...`: train, then print the run folder and its metrics. After Ctrl-C, one line
    on stderr says what the run folder kept and how to resume; exit code 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = TrainConfig(**vars(build_parser().parse_args(argv)))
    if config.cache_name is not None:  # on the command line a cache is named, never a path
        check_cache_name(config.cache_name)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run = fit.train(config)  # looked up at call time: tests replace `fit.train`
    except KeyboardInterrupt:
        print(f"c3ae train: interrupted: {_interrupted_report(config, argv)}", file=sys.stderr)
        return 128 + signal.SIGINT  # 130, the shell's code for a command stopped by Ctrl-C
    print(f"run folder: {run.path}")
    print(json.dumps(run.metrics, indent=2))
    return 0
