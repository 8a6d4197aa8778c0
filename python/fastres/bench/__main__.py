"""``python -m fastres.bench``: run the SUTs head to head and report the difference."""

import sys

from .cli import main

if __name__ == "__main__":  # the store's worker processes re-import this module
    sys.exit(main())
