"""Train a recipe's teacher on real data: ``datafree teacher`` from a checkout (datafree/cli/teacher.py).

    python train_teacher.py --config runs/fmnist.toml [--teacher_training.epochs 10]
"""

import sys

from datafree.cli.teacher import main  # noqa: F401  (the entry point's API, as before)

if __name__ == "__main__":
    sys.exit(main())
