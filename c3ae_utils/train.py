"""`python -m c3ae_utils.train --dataset utkface --loss focal --epochs N ...` (same as `c3ae train`).

See `python -m c3ae_utils.train --help` and `c3ae_utils.training` for what a run writes. Errors
follow `cli.run`'s contract: one line on stderr, no traceback (unless C3AE_DEBUG=1).
"""

from __future__ import annotations

import sys

from c3ae_utils import cli, training

if __name__ == "__main__":
    sys.exit(cli.run(training.main, prog="c3ae train"))
