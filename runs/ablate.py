"""Accuracy per wall-clock minute: the Fashion-MNIST recipe against variants that switch one thing off or on.

    python runs/ablate.py [--recipe fmnist] [--steps 300] [--only recipe,dafl] [--seed 0] [--smoke] [--section.key value]

Two groups of variants, all at the same number of generator steps and batch:
- the ladder from pure DAFL to the recipe (why each [tuned] line of runs/fmnist.toml is there);
- the cost knobs of the recipe (student steps per generator step, fresh vs reused batches, replay,
  generator width), where what matters is accuracy per minute, not per step.
Writes outputs/ablate/table.md and results.json; every run's folder is outputs/ablate/<variant>/.
Accuracies are on the real test set; times are this machine's, measured in the same invocation.
``--section.key`` overrides change the recipe every variant starts from; --smoke runs the chain in seconds on
generated stand-in data (numbers meaningless).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path


from datafree.bench.args import bench_parser, load_recipe, overridden, parse
from datafree.config import Config, set_synthesis_value
from datafree.config.spellings import LEGACY_BATCH_KEYS, translate_batch_keys

PURE_DAFL = {"generator.output": "bn", "generator.lr": 0.2, "generator.width": 64, "synthesis.adversarial": 0.0,
             "synthesis.moment": 0.0, "synthesis.tv": 0.0, "synthesis.feature_stats": 0.0,
             "synthesis.class_feature_stats": 0.0, "train.student_steps": 1, "train.fresh_batches": False}  # fmt: skip
# the recipe before the per-class statistics: pooled feature statistics only; the stats-* variants were measured on it
POOLED = {"synthesis.class_feature_stats": 0.0}
# the recipe before any feature statistics: smoothness (TV) instead; the cost knobs were measured on it
TV_RECIPE = {**POOLED, "synthesis.feature_stats": 0.0, "synthesis.tv": 1.0}

# name -> overrides of the recipe (section.key -> value; synthesis.<term> -> its weight); "recipe" is the recipe untouched.
VARIANTS: dict[str, dict] = {
    # ladder: pure DAFL -> the recipe, one change at a time
    "dafl": PURE_DAFL,
    "dafl-pixels": {**PURE_DAFL, "generator.output": "pixels", "generator.lr": 0.01},
    "pixels-adv-5fresh": {**PURE_DAFL, "generator.output": "pixels", "generator.lr": 0.01, "synthesis.adversarial": 1.0,
                    "train.student_steps": 5, "train.fresh_batches": True},  # fmt: skip
    "adv-moment": {**TV_RECIPE, "synthesis.tv": 0.0, "generator.width": 64, "train.student_steps": 5},
    "student-5-fresh": {**TV_RECIPE, "train.student_steps": 5, "train.fresh_batches": True},  # + TV, width 16
    "student-10-fresh": {**TV_RECIPE, "train.student_steps": 10, "train.fresh_batches": True},  # the TV recipe
    "stats-and-tv": {**POOLED, "synthesis.tv": 1.0},  # feature statistics on top of TV
    "stats-conv12": {**POOLED, "synthesis.feature_stats.layers": ["conv1", "conv2"]},  # without the 1x1 conv3
    "stats-no-moment": {**POOLED, "synthesis.moment": 0.0},
    "pooled-stats": POOLED,  # feature statistics instead of TV (the recipe before the per-class prior)
    "pooled-flip-shift": {**POOLED, "train.augment_flip": True, "train.augment_shift": 2},  # student batches augmented
    "pooled-conditional": {**POOLED, "generator.conditional": True},  # classes assigned per image
    "class-stats-1": {"synthesis.class_feature_stats": 1.0},  # pooled + per-class at weight 1
    "class-stats-only": {"synthesis.feature_stats": 0.0, "synthesis.class_feature_stats": 1.0},  # without pooled
    "recipe": {},  # pooled + per-class feature statistics (weight 3)
    # cost knobs around student-5-fresh (the recipe when they were first measured)
    "student-1": {**TV_RECIPE, "train.student_steps": 1, "train.fresh_batches": False},
    "student-5-same": {**TV_RECIPE, "train.student_steps": 5, "train.fresh_batches": False},
    "student-5-replay8": {**TV_RECIPE, "train.student_steps": 5, "train.fresh_batches": False, "train.replay": 8},
    "width-32": {**TV_RECIPE, "generator.width": 32, "train.student_steps": 5, "train.fresh_batches": True},
    "bf16": {**TV_RECIPE, "runtime.mixed_precision": "bf16", "train.student_steps": 5, "train.fresh_batches": True},
}


def configure(base: Config, name: str, steps: int, seed: int, root: Path) -> Config:
    config = copy.deepcopy(base)
    for key, value in VARIANTS[name].items():
        section, field = key.split(".", 1)
        if section == "synthesis":  # a term's weight, or "term.param"
            set_synthesis_value(config, field, value)
        elif section == "train" and field in LEGACY_BATCH_KEYS:  # the student's batches, in their old spelling
            config.batches = translate_batch_keys(config.batches, {field: value})
        else:
            setattr(getattr(config, section), field, value)
    t = config.train
    t.steps, t.seed, t.output_dir, t.overwrite = steps, seed, str(root / name), True
    t.eval_every = max(1, steps // 6)
    t.sample_every = t.checkpoint_every = steps
    return config


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until the first evaluation at or above ``target`` (None: never reached)."""
    return next((t for t, acc in curve if acc >= target), None)


def main(argv: list[str] | None = None) -> int:
    from datafree.build import reset_accelerate
    from datafree.io.checkpoint import atomic_write_text
    from datafree.pipeline import distill_from_config, hardware

    parser = bench_parser(__doc__, recipe="fmnist", output_root="outputs/ablate", record=False)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help=f"comma-separated variants among: {', '.join(VARIANTS)}")
    args = parse(parser, argv, owned={"train.steps": "--steps", "train.seed": "--seed", "train.output_dir": "--output-root"})
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    base = load_recipe(args.recipe)
    if args.smoke:
        from datafree.config.smoke import smoke_config

        base, args.steps = smoke_config(base), smoke_config(base).train.steps
    base, root = overridden(base, args), Path(args.output_root)
    rows, start = [], time.perf_counter()
    for i, name in enumerate(names, 1):
        print(f"== {i}/{len(names)}: {name}")
        reset_accelerate()
        config = configure(base, name, args.steps, args.seed, root)
        results = distill_from_config(config)
        lines = [json.loads(l) for l in (Path(config.train.output_dir) / "metrics.jsonl").read_text().splitlines()]
        curve = [(l["time_s"], l["student_acc"]) for l in lines if "student_acc" in l]
        rows.append({"variant": name, "overrides": VARIANTS[name], "final": results["student_acc_final"],
                     "best": results["student_acc_best"], "wall_time_s": results["wall_time_s"],
                     "acc_per_minute": results["student_acc_final"] / (results["wall_time_s"] / 60),
                     "time_to_50": time_to(curve, 0.5), "time_to_60": time_to(curve, 0.6),
                     "time_to_80": time_to(curve, 0.8), "curve": curve})  # fmt: skip
    fmt_t = lambda t: "-" if t is None else f"{t:.0f}"  # noqa: E731
    table = ["| variant | final acc | best acc | wall s | s to 50% | s to 60% | s to 80% |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['variant']} | {100 * r['final']:.2f} | {100 * r['best']:.2f} | {r['wall_time_s']:.0f} | "
                     f"{fmt_t(r['time_to_50'])} | {fmt_t(r['time_to_60'])} | {fmt_t(r['time_to_80'])} |")  # fmt: skip
    note = (f"\n{args.steps} generator steps x batch {base.train.batch_size} each, seed {args.seed}, "
            f"recipe {args.recipe}; {hardware()}; total {time.perf_counter() - start:.0f} s. "
            "Times include the periodic test-set evaluations.\n")  # fmt: skip
    text = "\n".join(table) + "\n" + note
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "table.md", text)
    atomic_write_text(root / "results.json", json.dumps({"steps": args.steps, "rows": rows, "hardware": hardware()}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
