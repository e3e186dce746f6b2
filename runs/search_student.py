"""``python runs/search_student.py ...`` = ``datafree search ...`` (datafree/cli/search.py): kept for the documented commands."""

import sys

from datafree.cli.search import main

if __name__ == "__main__":
    sys.exit(main())
