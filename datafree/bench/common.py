"""What several benchmarks share: teachers trained once per benchmark, a recipe at fixed steps, a finished run
folder loaded again (for the diagnostics that re-measure a saved student), and the process's resident memory."""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
from pathlib import Path

from datafree.config import Config


def trained_teachers(base: Config, specs: list[str], root: Path) -> list[dict]:
    """Each ``arch@seed`` trained (unless present) under root/teachers, with its route checkpointed four times for
    RCO; ``[{arch, checkpoint, seed, teacher_acc}]``."""
    from datafree.supervised import recorded_teacher_accuracy, train_teacher

    teachers = []
    for text in specs:
        arch, _, seed = text.partition("@")
        c = copy.deepcopy(base)
        c.teacher.kind, c.teacher.arch, c.teacher_training.seed = "single", arch, int(seed or 0)
        c.teacher.checkpoint = str(root / "teachers" / f"{arch}-s{c.teacher_training.seed}" / "teacher.safetensors")
        c.teacher_training.route_every = max(1, c.teacher_training.epochs // 4)
        path = Path(c.teacher.checkpoint)
        if not path.exists():
            train_teacher(c)
        acc = recorded_teacher_accuracy(path)
        teachers.append({"arch": arch, "checkpoint": str(path), "seed": c.teacher_training.seed, "teacher_acc": acc})
    return teachers


def fixed_steps_recipe(recipe: str, steps: int, teacher_epochs: int, smoke: bool, teacher: str, root: Path,
                       args: argparse.Namespace | None = None) -> tuple[Config, dict]:  # fmt: skip
    """A benchmark's base recipe at ``steps`` steps (no wall-time budget), with --smoke's settings and then the
    command line's ``--section.key`` overrides (``args``) laid over it, and its one ``arch@seed`` teacher trained
    under root/teachers and set in; returns (config, the teacher's entry)."""
    from datafree.bench.args import load_recipe, overridden
    from datafree.config.smoke import smoke_config

    base = load_recipe(recipe)
    base.train.steps, base.train.max_minutes = steps, 0.0
    if teacher_epochs:
        base.teacher_training.epochs = teacher_epochs
    if smoke:
        base = smoke_config(base)
    if args is not None:
        base = overridden(base, args)
    entry = trained_teachers(base, [teacher], root)[0]
    base.teacher.arch, base.teacher.checkpoint = entry["arch"], entry["checkpoint"]
    return base, entry


def refused(runs: list[Path]) -> bool:
    """Say which folder is not a data-free run (no config.json) and how to fix it; True if one is not."""
    for run in runs:
        if not (run / "config.json").is_file():
            print(f"error: {run} has no config.json; pass a data-free run's folder (e.g. outputs/<run>/seed_0)",
                  file=sys.stderr)  # fmt: skip
            return True
    return False


def load_run(run: Path, **train):
    """A fresh trainer of the run's recipe (``train`` laid over its [train] table, no time budget) holding the
    saved student and generator, its progress at the run's last step, the real test set as its eval set; and
    the recipe. The folder is read as untrusted input: JSON and safetensors only."""
    from datafree import build
    from datafree.io.checkpoint import load_weights
    from datafree.config import from_dict
    from datafree.data import recipe_split

    raw = json.loads((run / "config.json").read_text())
    raw["train"] = {**raw["train"], "max_minutes": 0.0, **train}
    config = from_dict(raw)
    trainer = build.trainer_from_config(config, eval_set=recipe_split(config.data, train=False))
    load_weights(trainer.student_net, run / "student_last.safetensors", what="student")
    load_weights(trainer.accelerator.unwrap_model(trainer.generator), run / "generator.safetensors", what="generator")
    trainer.progress.step = int(raw["train"]["steps"])
    return trainer, config


def rss_mb(key: str) -> float:
    """Current (``VmRSS``) or peak (``VmHWM``) resident memory of this process in MB; NaN off Linux."""
    with contextlib.suppress(OSError, StopIteration):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
        return int(line.split()[1]) / 1024
    return float("nan")


def search_weight_label(row: dict) -> str:
    """'-' for a hand-designed row; else the weight and whether it stayed fixed or grew while the search stalled."""
    if row["kind"] != "searched":
        return "-"
    return f"{row['l1']:g} " + ("fixed" if row.get("l1_fixed") else "growing")


def search_steps_label(row: dict) -> str:
    """Each seed's search steps, a star on a search that stopped at its step limit above the budget."""
    steps, reached = row.get("search_steps", []), row.get("reached", [])
    return "/".join(f"{n}{'' if ok else '*'}" for n, ok in zip(steps, reached)) or "-"


def class_list(indices: list[int], names: list[str], most: int = 6) -> str:
    """Classes named for a table cell: all of them up to ``most``, else how many of K and the first few (a
    100-class task can have dozens under half its teacher's accuracy)."""
    if not indices:
        return "none"
    if len(indices) <= most:
        return ", ".join(names[c] for c in indices)
    return f"{len(indices)} of {len(names)} ({', '.join(names[c] for c in indices[:3])}, ...)"


def pct(values: list[float]) -> str:
    """``mean ± std`` in percent over seeds (std 0 for one value): how every table states a figure."""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _made(p: dict, runs_on: list[str] | None = None) -> str:
    """``runs_on``: a merge's, the machines its runs ran on (the merging process measured nothing itself)."""
    hw = p["hardware"]
    if runs_on:
        return (f"`{p['command']}` · commit {p['commit']} · {p['date']} · merged; its runs on {' and '.join(runs_on)} · "
                f"torch {hw['torch']} · {hw['threads']} thread(s) per run")  # fmt: skip
    where = hw.get("accelerator") or f"{hw['cpu']} ({hw['cores']} cores, ATen {hw['cpu_capability']})"
    return f"`{p['command']}` · commit {p['commit']} · {p['date']} · {where} · torch {hw['torch']} · {hw['threads']} thread(s) per run"


def provenance_line(data: dict) -> str:
    """The command, commit, date and machine that wrote a results file, the commands that ran its rows where it
    merged output roots (``made_by``), and those of the recorded files merged into it: the line under every
    generated table."""
    earlier = "".join(f"<br>merged in, rows recorded by: {_made(p)}" for p in data.get("earlier", []))
    runs = "".join(f"<br>rows run by: `{command}`" for command in data.get("made_by", []))
    return f"<sub>{_made(data['provenance'], data.get('runs_on'))}{runs}{earlier}</sub>"
