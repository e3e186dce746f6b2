"""`make demo`: teacher on real data (if not trained yet), data-free student, report.

    python runs/demo.py [--config runs/fmnist.toml] [overrides...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datafree.config import ConfigError, load_toml  # noqa: E402
from datafree.overrides import add_override_arguments, apply_overrides, parse_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from datafree.checkpoint import CheckpointError
    from datafree.data import DataMissingError
    from datafree.cli.feature_stats import ensure_for_recipe
    from datafree.pipeline import distill_from_config
    from datafree.supervised import train_teacher
    from datafree.trainer import NonFiniteLossError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="runs/fmnist.toml")
    parser.add_argument("--retrain-teacher", action="store_true", help="train the teacher even if its checkpoint exists")
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    start = time.perf_counter()
    try:
        config = apply_overrides(load_toml(args.config), args)
        config.train.overwrite = True  # the demo starts from scratch: it replaces its own earlier run
        if args.retrain_teacher or not Path(config.teacher_checkpoint).exists():
            print(f"== training the teacher ({config.teacher.arch} on real {config.data.name})")
            train_teacher(config)
        else:
            print(f"== teacher found: {config.teacher_checkpoint}")
            ensure_for_recipe(config)  # a teacher trained before train_teacher.py wrote them
        print(f"== data-free distillation into {config.student.arch} (no training image is used)")
        results = distill_from_config(config)
    except (ConfigError, CheckpointError, DataMissingError, NonFiniteLossError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(config.train.output_dir)
    print(f"teacher accuracy {results['teacher_acc']:.4f}; student final {results['student_acc_final']:.4f}, "
          f"best {results['student_acc_best']:.4f}; demo wall time {time.perf_counter() - start:.0f} s")  # fmt: skip
    print(f"report: {out.resolve() / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
