"""Train a recipe's teacher on real data (and keep its route checkpoints).

    python train_teacher.py --config runs/fmnist.toml [--teacher_training.epochs 10]

A recipe with several teachers (``[teacher] members = [{arch, checkpoint, seed?}, ...]``, e.g. ``kind = "ensemble"``)
trains every member, one after another, each with its own seed (default: teacher_training.seed + its index).
"""

from __future__ import annotations

import argparse
import sys

from datafree.config import ConfigError, load_toml
from datafree.overrides import add_override_arguments, apply_overrides


def main(argv: list[str] | None = None) -> int:
    from datafree.data import DataMissingError
    from datafree.supervised import train_members, train_teacher

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="runs/fmnist.toml", help="recipe TOML (default: runs/fmnist.toml)")
    add_override_arguments(parser, sections=["data", "teacher", "teacher_training"])  # what it reads
    args = parser.parse_args(argv)
    try:
        config = apply_overrides(load_toml(args.config), args)
        results = train_members(config) if config.teacher.members else [train_teacher(config)]
    except (ConfigError, DataMissingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for result in results:
        print(f"teacher test accuracy {result['teacher_acc']:.4f}; saved {result['checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
