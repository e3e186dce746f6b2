"""Data-free distillation from a recipe: ``datafree train`` from a checkout (datafree/cli/train.py).

    accelerate launch train_dfl.py --config runs/fmnist.toml [--train.steps 500] [--resume]
"""

import sys

from datafree.cli.train import DEFAULT_RECIPE, main, parse  # noqa: F401  (the entry point's API, as before)

if __name__ == "__main__":
    sys.exit(main())
