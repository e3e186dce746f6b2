"""Train a recipe's teacher on real data (and keep its route checkpoints): ``datafree teacher`` (``train_teacher.py``).

    datafree teacher --recipe fmnist [--teacher_training.epochs 10]
    python train_teacher.py --config runs/fmnist.toml

A recipe with several teachers (``[teacher] members = [{arch, checkpoint, seed?}, ...]``, e.g. ``kind = "ensemble"``)
trains every member, one after another, each with its own seed (default: teacher_training.seed + its index).
"""

from __future__ import annotations

import argparse
import sys

from datafree.config import ConfigError, load_toml
from datafree.config.overrides import add_override_arguments, apply_overrides


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    from datafree.data import DataMissingError
    from datafree.supervised import train_members, train_teacher

    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--recipe", dest="config", default="fmnist",
                        help="recipe: a TOML file or a shipped recipe's name (default: fmnist)")
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
