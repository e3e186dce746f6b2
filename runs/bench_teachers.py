"""The zoo benchmark from a checkout: ``python runs/bench_teachers.py ...`` is ``datafree bench zoo ...``
(datafree/bench/zoo.py; ``--help`` lists the options)."""

import sys

from datafree.bench.zoo import main

if __name__ == "__main__":
    sys.exit(main())
