"""Data-free distillation from a recipe (``datafree train``; ``train_dfl.py`` at the repository's top calls this).

    datafree train --recipe fmnist [--train.steps 500] [--resume]          # a shipped recipe, from any folder
    accelerate launch train_dfl.py --config runs/fmnist.toml              # the same from a checkout
    accelerate launch -m datafree train --recipe fmnist                   # under Accelerate's launcher
    datafree train --recipe fmnist --from-export outputs/fmnist/synthetic  # no generator in the loop
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 -m datafree train ...   # 2 CPU processes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datafree.config import ConfigError, Config, load_toml
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args

DEFAULT_RECIPE = "fmnist"  # the shipped demo recipe (datafree/recipes: runs/fmnist.toml)


def parse(argv: list[str] | None = None, prog: str | None = None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--recipe", dest="config", default=DEFAULT_RECIPE,
                        help="recipe: a TOML file or a shipped recipe's name (`datafree recipes`; default: fmnist)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--from-export", default=None, metavar="DIR",
                        help="train the student by KD on a synthetic set written by `python -m datafree.cli.export`")  # fmt: skip
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    return apply_overrides(load_toml(args.config), args), args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    from datafree.io.checkpoint import CheckpointError
    from datafree.data import DataMissingError
    from datafree.pipeline import distill_from_config
    from datafree.trainer import NonFiniteLossError

    try:
        config, args = parse(argv, prog)
        if args.from_export:
            from datafree.offline import distill_from_export

            results = distill_from_export(config, args.from_export)
        else:
            results = distill_from_config(config, resume=args.resume)
    except (ConfigError, CheckpointError, DataMissingError, NonFiniteLossError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(config.train.output_dir)
    if results.get("student_acc_final") is not None and results.get("teacher_acc") is not None:
        print(f"teacher {results['teacher_acc']:.4f}  student final {results['student_acc_final']:.4f}  "
              f"best {results['student_acc_best']:.4f}  ({results['wall_time_s']:.0f} s)")  # fmt: skip
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
