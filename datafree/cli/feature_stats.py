"""The teacher's recorded feature statistics for a recipe: ``python -m datafree.cli.feature_stats --config <recipe>``.

For a teacher without BatchNorm trained before ``train_teacher.py`` wrote them (see datafree/feature_stats.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datafree import build
from datafree.checkpoint import CheckpointError
from datafree.config import ConfigError, load_toml
from datafree.overrides import add_override_arguments, apply_overrides, parse_args
from datafree.data import DataMissingError, recipe_split
from datafree.feature_stats import (PENULTIMATE_TAP, batchnorm_reference, has_class_stats, has_outputs,
                                    recorded_stats_path, record_teacher_stats, save_reference)  # fmt: skip


def record_for_recipe(config) -> Path:
    """Record a recipe's trained teacher's statistics on the recipe's real training set; returns the file."""
    spec = build.image_spec(config)
    net = build.load_teacher_net(config, spec)
    images, labels = recipe_split(config.data, train=True).tensors
    path = recorded_stats_path(config.teacher_checkpoint, config.teacher.stats)
    if path is None:
        raise ConfigError('[teacher] stats = "none" names no file to record into: set it to "" (beside the '
                          "checkpoint) or a path")
    pooled, per_class = record_teacher_stats(net, zip(images.split(1000), labels.split(1000)), spec.num_classes)
    save_reference(pooled, path, per_class)
    return path


def ensure_for_recipe(config) -> Path | None:
    """Record the statistics if the recipe uses them, its teacher has no BatchNorm and they are not there yet.

    For scripts that own the whole chain (demo, benchmark), right after the teacher is trained or found.
    """
    path, used = recorded_stats_path(config.teacher_checkpoint, config.teacher.stats), {t.name for t in config.synthesis if t.weight}
    if path is None:  # the weights-only case: nothing is recorded or read
        return None
    need_class = "class_feature_stats" in used and not (path.exists() and has_class_stats(path))
    need_class |= "class_output_stats" in used and not (path.exists() and has_outputs(path))  # recorded before them
    need_class |= "class_penultimate_stats" in used and not (path.exists() and has_outputs(path, PENULTIMATE_TAP))
    need_pooled = ("feature_stats" in used and not path.exists()
                   and not batchnorm_reference(build.build_net(config.teacher.arch, build.image_spec(config))))  # fmt: skip
    if not (need_class or need_pooled):
        return None
    print("== recording the teacher's feature statistics on its training data (teacher side, once)")
    return record_for_recipe(config)


def main(argv: list[str] | None = None) -> int:
    """Record the statistics for a recipe's existing teacher (no BatchNorm) from the recipe's real training set."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", default="runs/fmnist.toml")
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    try:
        path = record_for_recipe(apply_overrides(load_toml(args.config), args))
    except (ConfigError, DataMissingError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
