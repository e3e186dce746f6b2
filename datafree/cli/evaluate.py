"""``python -m datafree.cli.evaluate <student.safetensors> --config <recipe> [--confusion]``: per-class accuracy of a
saved student beside its teacher's, and (``--confusion``) both confusion matrices: where each class's errors go."""

from __future__ import annotations

import argparse
import sys

from torch.utils.data import DataLoader

from datafree import build
from datafree.io.checkpoint import CheckpointError, load_weights
from datafree.config import ConfigError, load_toml
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args
from datafree.data import DataMissingError, dataset_info, recipe_split
from datafree.nets.evaluate import confusion_counts, counts_of, overall, per_class


def main(argv: list[str] | None = None) -> int:
    """Per-class accuracy of a saved student (and the recipe's teacher) on the recipe's real test set."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("student", help="a student_*.safetensors written by a run")
    parser.add_argument("--config", default="runs/fmnist.toml", help="the recipe the student was trained with")
    parser.add_argument("--confusion", action="store_true",
                        help="also print the teacher's and the student's confusion matrices (%% of each true class)")
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
    matrices = {role: confusion_counts(net, loader) for role, net in nets.items()}
    counts = {role: counts_of(matrix) for role, matrix in matrices.items()}
    rows = {role: per_class(c) for role, c in counts.items()}
    names = dataset_info(d.name, like=d.like or None).class_names
    print("| class | teacher | student |\n|---|---:|---:|")
    for k, name in enumerate(names):
        print(f"| {name} | {100 * rows['teacher'][k]:.2f}% | {100 * rows['student'][k]:.2f}% |")
    print(f"| all | {100 * overall(counts['teacher']):.2f}% | {100 * overall(counts['student']):.2f}% |")
    if args.confusion:
        for role, matrix in matrices.items():
            print(f"\n{role}: % of each true class (rows) predicted as each class (columns)\n")
            print(confusion_table(matrix.tolist(), names))
    return 0


def confusion_table(matrix: list[list[int]], names: list[str]) -> str:
    """A markdown confusion matrix in percent of each row (true class); an empty class shows dashes."""
    lines = ["| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for name, row in zip(names, matrix):
        total = sum(row)
        cells = [f"{100 * n / total:.1f}" if total else "-" for n in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
