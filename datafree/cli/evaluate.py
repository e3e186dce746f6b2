"""``python -m datafree.cli.evaluate <student.safetensors> --config <recipe>``: per-class accuracy of a saved student."""

from __future__ import annotations

import argparse
import sys

from torch.utils.data import DataLoader

from datafree import build
from datafree.checkpoint import CheckpointError, load_weights
from datafree.config import ConfigError, load_toml
from datafree.overrides import add_override_arguments, apply_overrides, parse_args
from datafree.data import DataMissingError, dataset_info, recipe_split
from datafree.evaluate import class_counts, overall, per_class


def main(argv: list[str] | None = None) -> int:
    """Per-class accuracy of a saved student (and the recipe's teacher) on the recipe's real test set."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("student", help="a student_*.safetensors written by a run")
    parser.add_argument("--config", default="runs/fmnist.toml", help="the recipe the student was trained with")
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    try:
        config = apply_overrides(load_toml(args.config), args)
        spec, d = build.image_spec(config), config.data
        test = recipe_split(d, train=False)
        student = build.build_net(config.student.arch, spec, **config.student.kwargs)
        nets = {"teacher": build.load_teacher_net(config, spec),
                "student": load_weights(student, args.student, what="student")}  # fmt: skip
    except (ConfigError, DataMissingError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    loader = DataLoader(test, batch_size=d.eval_batch_size)
    counts = {role: class_counts(net, loader) for role, net in nets.items()}
    rows = {role: per_class(c) for role, c in counts.items()}
    names = dataset_info(d.name, like=d.like or None).class_names
    print("| class | teacher | student |\n|---|---:|---:|")
    for k, name in enumerate(names):
        print(f"| {name} | {100 * rows['teacher'][k]:.2f}% | {100 * rows['student'][k]:.2f}% |")
    print(f"| all | {100 * overall(counts['teacher']):.2f}% | {100 * overall(counts['student']):.2f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
