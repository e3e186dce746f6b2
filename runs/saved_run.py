"""A finished data-free run folder, loaded again for the diagnostics in runs/ (precise_bn_check, class_gap)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datafree import build  # noqa: E402
from datafree.checkpoint import load_weights  # noqa: E402
from datafree.config import Config, from_dict  # noqa: E402
from datafree.data import recipe_split  # noqa: E402
from datafree.trainer import DataFreeTrainer  # noqa: E402


def refused(runs: list[Path]) -> bool:
    """Say which folder is not a data-free run (no config.json) and how to fix it; True if one is not."""
    for run in runs:
        if not (run / "config.json").is_file():
            print(f"error: {run} has no config.json; pass a data-free run's folder (e.g. outputs/<run>/seed_0)",
                  file=sys.stderr)  # fmt: skip
            return True
    return False


def load_run(run: Path, **train) -> tuple[DataFreeTrainer, Config]:
    """A fresh trainer of the run's recipe (``train`` laid over its [train] table, no time budget) holding the
    saved student and generator, its progress at the run's last step, the real test set as its eval set; and
    the recipe."""
    raw = json.loads((run / "config.json").read_text())
    raw["train"] = {**raw["train"], "max_minutes": 0.0, **train}
    config = from_dict(raw)
    trainer = build.trainer_from_config(config, eval_set=recipe_split(config.data, train=False))
    load_weights(trainer.student_net, run / "student_last.safetensors", what="student")
    load_weights(trainer.accelerator.unwrap_model(trainer.generator), run / "generator.safetensors", what="generator")
    trainer.progress.step = int(raw["train"]["steps"])
    return trainer, config
