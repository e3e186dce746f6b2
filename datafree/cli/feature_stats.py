"""The teacher's recorded feature statistics for a recipe: ``python -m datafree.cli.feature_stats --config <recipe>``.

For a teacher without BatchNorm trained before ``train_teacher.py`` wrote them (see datafree/nets/feature_stats.py).
"""

from __future__ import annotations

import argparse
import sys

from datafree.io.checkpoint import CheckpointError
from datafree.config import ConfigError, load_toml
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args
from datafree.data import DataMissingError
from datafree.supervised import record_for_recipe


def main(argv: list[str] | None = None) -> int:
    """Record the statistics for a recipe's existing teacher (no BatchNorm) from the recipe's real training set."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", default="runs/fmnist.toml")
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    try:
        path = record_for_recipe(apply_overrides(load_toml(args.config), args))
    except (ConfigError, DataMissingError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
