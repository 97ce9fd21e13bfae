"""`python -m c3ae_utils.faces build-cache|finalize ...`: the face-cache command line."""

from __future__ import annotations

import sys

from c3ae_utils.faces.cache import main

if __name__ == "__main__":
    sys.exit(main())
