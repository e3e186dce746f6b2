"""`make demo`: teacher on real data (if not trained yet), data-free student, report.

    python runs/examples/demo.py [--recipe fmnist] [--retrain-teacher] [--section.key value ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from datafree.bench.args import bench_parser, load_recipe, parse
from datafree.config import ConfigError
from datafree.config.overrides import apply_overrides


def main(argv: list[str] | None = None) -> int:
    from datafree.io.checkpoint import CheckpointError
    from datafree.data import DataMissingError
    from datafree.pipeline import distill_from_config
    from datafree.supervised import ensure_for_recipe, found_teacher_note, teacher_record, train_teacher
    from datafree.trainer import NonFiniteLossError

    parser = bench_parser(__doc__, recipe="fmnist", smoke=False, record=False)
    parser.add_argument("--retrain-teacher", action="store_true", help="train the teacher even if its checkpoint exists")
    args = parse(parser, argv)
    start = time.perf_counter()
    try:
        config = apply_overrides(load_recipe(args.recipe), args)
        config.train.overwrite = True  # the demo starts from scratch: it replaces its own earlier run
        if args.retrain_teacher or not Path(config.teacher_checkpoint).exists():
            print(f"== training the teacher ({config.teacher.arch} on real {config.data.name})")
            train_teacher(config)
        else:
            print(f"== teacher found: {config.teacher_checkpoint}")
            if note := found_teacher_note(config, teacher_record(config.teacher_checkpoint)):
                print(f"   note: {note}")
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
