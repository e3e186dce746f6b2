"""The speed benchmark from a checkout: ``python runs/bench_speed.py ...`` is ``datafree bench speed ...``
(datafree/bench/speed.py; ``--help`` lists the options)."""

import sys

from datafree.bench.speed import main

if __name__ == "__main__":
    sys.exit(main())
