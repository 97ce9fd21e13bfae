"""`python -m c3ae_utils.inference photo.jpg ...`: `c3ae predict` without the console script."""

from __future__ import annotations

import sys

from c3ae_utils.inference.command import main

if __name__ == "__main__":
    sys.exit(main())  # `main` applies the error contract itself (cli.run)
