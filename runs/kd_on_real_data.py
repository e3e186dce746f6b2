"""Sanity check of the student path: the recipe's student and KD losses, fed REAL training images.

    python runs/kd_on_real_data.py [--config runs/fmnist.toml] [--steps 300] [--output-dir outputs/kd_real]

The same trainer as a data-free run with ``train.transfer = "real"``: the student's batches are the recipe's
training images (labels unused; the teacher labels them), one student update per step, no generator step. If
this reaches good accuracy while data-free distillation does not, the gap is in the synthetic data, not in the
student, the losses or the evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datafree.config import ConfigError, load_toml  # noqa: E402
from datafree.spellings import translate_batch_keys  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from datafree.pipeline import distill_from_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="runs/fmnist.toml")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--output-dir", default="outputs/kd_real")
    args = parser.parse_args(argv)
    try:
        config = load_toml(args.config)
        t = config.train
        t.transfer, t.steps, t.student_steps = "real", args.steps, 1
        config.batches = translate_batch_keys(config.batches, {"fresh_batches": False, "replay": 0})
        t.output_dir, t.overwrite, t.max_minutes = args.output_dir, True, 0.0
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
