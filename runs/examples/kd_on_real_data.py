"""Sanity check of the student path: the recipe's student and KD losses, fed REAL training images.

    python runs/examples/kd_on_real_data.py [--recipe fmnist] [--steps 300] [--output-root outputs/kd_real] [--section.key value]

The same trainer as a data-free run with ``train.transfer = "real"``: the student's batches are the recipe's
training images (labels unused; the teacher labels them), one student update per step, no generator step. If
this reaches good accuracy while data-free distillation does not, the gap is in the synthetic data, not in the
student, the losses or the evaluation.
"""

from __future__ import annotations

import argparse
import sys

from datafree.bench.args import bench_parser, load_recipe, overridden, parse
from datafree.config import ConfigError
from datafree.config.spellings import translate_batch_keys


def main(argv: list[str] | None = None) -> int:
    from datafree.pipeline import distill_from_config

    parser = bench_parser(__doc__, recipe="fmnist", output_root="outputs/kd_real", smoke=False, record=False)
    parser.add_argument("--output-dir", dest="output_root", help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument("--steps", type=int, default=300)
    args = parse(parser, argv, owned={"train.steps": "--steps", "train.output_dir": "--output-root",
                                      "train.transfer": "(this script: real images)"})  # fmt: skip
    try:
        config = overridden(load_recipe(args.recipe), args)
        t = config.train
        t.transfer, t.steps, t.student_steps = "real", args.steps, 1
        config.batches = translate_batch_keys(config.batches, {"fresh_batches": False, "replay": 0})
        t.output_dir, t.overwrite, t.max_minutes = args.output_root, True, 0.0
        t.eval_every = min(t.eval_every, 100)
        results = distill_from_config(config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"KD on real images, {args.steps} steps of {config.train.batch_size}: student accuracy on the real test set "
          f"{results['student_acc_final']:.4f} (teacher {results['teacher_acc']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
