"""The `c3ae` console script: `c3ae train ...`, `c3ae predict ...`, `c3ae data ...`."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("c3ae_utils.training", "train a model (see `c3ae train --help`)"),
    "predict": ("c3ae_utils.inference", "predict ages on photos or videos"),
    "data": ("c3ae_utils.datasets", "fetch datasets and inspect the registry"),
    "cache": ("c3ae_utils.faces", "detect, align and crop faces into a cache"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch `c3ae COMMAND ARGS...` to the module that owns COMMAND."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        lines = [f"  {name:8s} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: c3ae COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
