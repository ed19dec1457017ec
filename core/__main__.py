"""``python -m core ...``: the command line of the dashboard's library."""

from __future__ import annotations

import sys

from core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
