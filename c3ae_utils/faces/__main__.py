"""`python -m c3ae_utils.faces build-cache ...`: the face-cache command line, under
the package's error contract (`cli.run`: one line on stderr for expected errors)."""

from __future__ import annotations

import sys

from c3ae_utils import cli
from c3ae_utils.faces.cli import main

if __name__ == "__main__":
    sys.exit(cli.run(main, prog="c3ae cache"))
