"""`python -m c3ae_utils.training ...` (the same as `c3ae train ...`): runs `command.main`
under the package's error contract (`c3ae_utils.cli.run`) and exits with its status."""

import sys

from c3ae_utils import cli
from c3ae_utils.training.command import main

if __name__ == "__main__":
    sys.exit(cli.run(main, prog="c3ae train"))
