"""Sequential FEED: the teachers' knowledge fed to ONE student one teacher after another, a stage per teacher.

    datafree feed --config runs/my_ensemble.toml [--minutes 4 | --train.steps 600] [--output-root outputs/sfeed] [--smoke]
    (python runs/sequential_feed.py ... runs the same)

The recipe names its teachers as ``[teacher] kind = "ensemble"`` members. Stage m distills the student from
member m alone (a ``single`` teacher: that member's architecture, checkpoint and statistics), with the recipe's
generator terms and ``[[distill]]`` losses (``feed`` then has one transform: the member's), for ``train.steps``
steps (or ``--minutes`` of loop per stage); stage m + 1 starts from stage m's student (its weights; the generator
and optimizers start afresh, as a new stage of the paper's does). Prints and writes (``stages.json`` under
--output-root) the student's accuracy after every stage.

Which reading of "sequential": FEED's paper also trains a chain where each stage's student teaches the next
(born-again style). Data-free, that chain's later teachers are small students with neither BatchNorm nor
recorded statistics, so the generator would lose its feature priors after stage 1; feeding the company's
several trained teachers one by one keeps every stage's priors and uses all of them, which is the case our
users have. --smoke runs the chain in seconds on generated stand-in data (numbers meaningless).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from datafree.config import Config, ConfigError, load_toml
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args


def stage_config(config: Config, member: dict, stage: int, root: Path, minutes: float) -> Config:
    """The recipe with member ``stage`` as its lone teacher, written under ``root/stage_<m>``."""
    c = copy.deepcopy(config)
    c.name = f"{config.name}-stage{stage}"
    c.teacher.kind, c.teacher.members = "single", []
    c.teacher.arch, c.teacher.checkpoint = member["arch"], member["checkpoint"]
    c.teacher.feature_layer = member.get("feature_layer", "")
    c.train.output_dir, c.train.overwrite = str(root / f"stage_{stage}"), True
    c.train.max_minutes = minutes or c.train.max_minutes
    return c


def run_stages(config: Config, root: Path, minutes: float = 0.0) -> list[dict]:
    """Every stage in member order; each one's results (accuracy after it)."""
    from datafree import build
    from datafree.io.checkpoint import load_weights
    from datafree.data import recipe_split
    from datafree.pipeline import distill

    members = config.teacher.members
    if config.teacher.kind != "ensemble" or len(members) < 2:
        raise ConfigError("sequential FEED needs [teacher] kind = \"ensemble\" with at least two members")
    eval_set = recipe_split(config.data, train=False)
    previous, stages = None, []
    for stage, member in enumerate(members):
        c = stage_config(config, member, stage, root, minutes)
        teacher, student_net, spec = build.networks_from_config(c)
        if member.get("stats"):
            teacher.members()[0].stats = member["stats"]
        if previous is not None:  # the student carries on from the last stage
            load_weights(student_net, previous, what="previous stage's student")
        print(f"== stage {stage}: teacher {member['arch']} ({member['checkpoint']})", flush=True)
        results = distill(c, teacher, student_net, spec, eval_set)
        build.reset_accelerate()
        previous = Path(c.train.output_dir) / "student_last.safetensors"
        stages.append({"stage": stage, "teacher": member, **{k: results[k] for k in (
            "teacher_acc", "student_acc_final", "student_acc_best", "steps", "wall_time_s")}})  # fmt: skip
        print(f"   after stage {stage}: student {results['student_acc_final']}, teacher {results['teacher_acc']}")
    return stages


def main(argv: list[str] | None = None) -> int:
    from datafree.io.checkpoint import CheckpointError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--recipe", required=True, help="a recipe with [teacher] kind = \"ensemble\"")
    parser.add_argument("--minutes", type=float, default=0.0, help="loop budget per stage (default: train.steps)")
    parser.add_argument("--output-root", default="outputs/sfeed")
    parser.add_argument("--smoke", action="store_true", help="generated stand-in data, seconds per stage")
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    try:
        config = apply_overrides(load_toml(args.config), args)
        if args.smoke:
            from datafree.config.smoke import smoke_config

            config = smoke_config(config)
        stages = run_stages(config, Path(args.output_root), args.minutes)
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    root = Path(args.output_root)
    (root / "stages.json").write_text(json.dumps(stages, indent=2))
    for s in stages:
        print(f"stage {s['stage']} ({s['teacher']['arch']}): student final {s['student_acc_final']}, "
              f"best {s['student_acc_best']}, teacher {s['teacher_acc']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
