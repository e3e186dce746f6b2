"""``python runs/sequential_feed.py ...`` = ``datafree feed ...`` (datafree/cli/feed.py): kept for the documented commands."""

import sys

from datafree.cli.feed import main

if __name__ == "__main__":
    sys.exit(main())
