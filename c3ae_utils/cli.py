"""The `c3ae` console script (`c3ae train ...`, `c3ae predict ...`, `c3ae data ...`,
`c3ae cache ...`) and `run`, the error contract every command line of the package shares.

Contract: a command's expected errors (a bad argument or input: `ValueError`; a missing,
unreadable or damaged file, a failed download: `OSError`) end it with ONE line on stderr,
`<prog>: error: <what and what to do>`, and exit code 1; argparse's own usage errors exit 2;
Ctrl-C exits 130 after one line (a command that saves work says what it kept and how to
resume). Any other exception is a bug and keeps its traceback. `C3AE_DEBUG=1` shows the
traceback of expected errors too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

COMMANDS = {
    "train": ("c3ae_utils.training", "train a model (see `c3ae train --help`)"),
    "predict": ("c3ae_utils.inference", "predict ages on photos or videos"),
    "data": ("c3ae_utils.datasets", "fetch datasets and inspect the registry"),
    "cache": ("c3ae_utils.faces", "detect, align and crop faces into a cache"),
}
DEBUG_VARIABLE = "C3AE_DEBUG"
EXPECTED_ERRORS = (ValueError, OSError)  # bad input; missing, unreadable or damaged files
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


class ArgumentParser(argparse.ArgumentParser):
    """The package's argument parser: a usage error is one line, `<prog>: error: ...
    (see `<prog> --help`)`, exit code 2, like every other error of a command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message.rstrip('.')} (see `{self.prog} --help`).\n")


def error_line(error: BaseException) -> str:
    """The message of `error` on one line (inner newlines folded into spaces)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
        prog: str = "c3ae") -> int:
    """Run a command-line `main(argv)` under the package's error contract (module docstring);
    return its exit code."""
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted.", file=sys.stderr)
        return INTERRUPTED
    except EXPECTED_ERRORS as error:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        print(f"{prog}: error: {error_line(error)}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Dispatch `c3ae COMMAND ARGS...` to the module that owns COMMAND."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        lines = [f"  {name:8s} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: c3ae COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return run(module.main, argv[1:], prog=f"c3ae {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
