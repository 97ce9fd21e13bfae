"""`python -m c3ae_utils.datasets ...`: runs `cli.main` and exits with its status."""

import sys

from c3ae_utils.datasets.cli import main

if __name__ == "__main__":
    sys.exit(main())
