"""The ``datafree`` command: one entry point, a subcommand per task, the recipes shipped inside the package.

    datafree recipes                                   # the shipped recipes
    datafree teacher --recipe fmnist                   # train the recipe's teacher on real data
    datafree train --recipe fmnist --train.steps 500   # data-free distillation (any --section.key override)
    datafree stats --config runs/zoo.toml              # record a teacher's feature statistics
    datafree evaluate ... / export ... / deploy ...    # evaluate a student, export a synthetic set, ship as ONNX
    datafree search --config fmnist --search.target_flops 144e3   # a student found inside the teacher, then distilled
    datafree feed --config <ensemble recipe>           # sequential FEED over an ensemble's teachers
    datafree bench zoo --part tuned / bench speed      # the shipped benchmarks
    accelerate launch -m datafree train --recipe fmnist   # several processes / GPUs through Accelerate's launcher

Each subcommand is the module named below; ``datafree <subcommand> --help`` prints its options.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with main(argv), one line for the listing)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("datafree.cli.train", "data-free distillation from a recipe (train_dfl.py)"),
    "teacher": ("datafree.cli.teacher", "train a recipe's teacher on real data (train_teacher.py)"),
    "stats": ("datafree.cli.feature_stats", "record a teacher's feature statistics on its training data"),
    "evaluate": ("datafree.cli.evaluate", "evaluate a saved student on the real test set"),
    "export": ("datafree.cli.export", "write a synthetic set from a trained generator"),
    "deploy": ("datafree.cli.deploy", "export the student to ONNX and check it with onnxruntime (extra: onnx)"),
    "search": ("datafree.cli.search", "search a student inside the teacher (channel gates), then distill it"),
    "feed": ("datafree.cli.feed", "sequential FEED: one student fed by an ensemble's teachers one after another"),
    "bench": ("datafree.cli.bench", "the shipped benchmarks: the zoo of teacher -> student pairs, the step's speed"),
}


def usage() -> str:
    lines = [__doc__.strip().splitlines()[0], "", "usage: datafree <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:9s} {line}" for name, (_, line) in SUBCOMMANDS.items()]
    lines += ["  recipes   list the shipped recipes", "", "datafree <subcommand> --help: its options"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "recipes":
        from datafree.recipes import HERE, list_recipes

        for name in list_recipes():
            first = (HERE / f"{name}.toml").read_text().splitlines()[0].lstrip("# ")
            print(f"{name:18s} {first}")
        return 0
    if command not in SUBCOMMANDS:
        print(f"error: unknown subcommand {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[command][0])
    saved, sys.argv = sys.argv, [f"datafree {command}", *rest]  # the subcommand's --help and errors name it
    try:
        return int(module.main(rest) or 0)
    finally:
        sys.argv = saved


if __name__ == "__main__":
    sys.exit(main())
