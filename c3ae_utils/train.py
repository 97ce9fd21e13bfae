"""`python -m c3ae_utils.train --dataset utkface --loss focal --epochs N ...` (same as `c3ae train`).

See `python -m c3ae_utils.train --help` and `c3ae_utils.training` for what a run writes.
"""

from __future__ import annotations

import sys

from c3ae_utils import training

if __name__ == "__main__":
    sys.exit(training.main())
