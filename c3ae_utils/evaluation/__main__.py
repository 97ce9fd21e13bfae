"""`python -m c3ae_utils.evaluation results ...` (`make results`): the results table, under
the package's error contract (`cli.run`: one line on stderr for expected errors)."""

from __future__ import annotations

import sys

from c3ae_utils import cli
from c3ae_utils.evaluation.results import main

if __name__ == "__main__":
    sys.exit(cli.run(main, prog="python -m c3ae_utils.evaluation"))
