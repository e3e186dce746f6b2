"""Which teacher should the student learn from? The seeds' teacher-side methods at equal wall time.

    python runs/bench_teacher_methods.py [--recipe zoo] [--teachers lenet5@0,lenet5@1,lenet5@2,vgg_bn@0]
        [--student lenet5_half] [--methods single,ensemble_kd,feed,sfeed,rco] [--transfer synthetic|real] [--seeds 3]
        [--minutes 5 | --steps N] [--teacher-epochs N] [--feed-weight 1.0] [--rco-schedule equal|plateau] [--rco-invert final|anchor]
        [--output-root outputs/bench_methods] [--smoke] [--record NAME]

Teachers (``arch@seed``) are trained once on the real data (``teacher_training.seed`` = that seed; route
checkpoints four times per training, for RCO) and reported alone. Then, with the SAME recipe and the same loop
budget per run (``--minutes``; sequential FEED splits it over its stages):

- ``single``: the best teacher alone (highest test accuracy) -> the student;
- ``ensemble_kd``: the same ensemble with the recipe's losses alone: KD on the members' averaged logits, FEED's
  ablation (what its feature transforms add beyond the logit average);
- ``feed``: parallel FEED: ``[teacher] kind = "ensemble"`` of every teacher, the recipe's losses + ``feed``;
- ``sfeed``: sequential FEED (runs/sequential_feed.py): a stage per teacher, the student carried over;
- ``rco``: ``[teacher] kind = "route"`` on the best teacher's route.

``--steps N`` gives equal wall time without trusting one machine's load: every method's seconds per step is
timed back to back before the runs (``datafree.pipeline.seconds_per_step``), ``single`` gets N steps and every
other method the steps that take as long as N of single's (sfeed: split over its stages); a busy machine then
slows every run without changing any step count. ``--minutes`` times each run at its own start instead.

``--transfer real`` runs the same methods on the real training images (labels unused; ``single`` is then plain
KD on real data). Writes table.md and results.json under --output-root (final and best accuracy, mean +- std over
seeds, wall time); ``--record NAME`` also writes the per-seed figures with their provenance to results/NAME.json
(datafree.io.results). --smoke: generated stand-in data, seconds per run (numbers meaningless).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from datafree.bench.args import bench_parser, load_recipe, overridden, parse, recipe_label
from datafree.bench.common import trained_teachers
from datafree.config import Config, TermConfig

ROOT = Path(__file__).resolve().parents[1]


# recipe keys each run sets from this script's own options (an override of one is refused, naming the option)
OWNED = {"train.steps": "--steps", "train.seed": "--seeds", "train.output_dir": "--output-root",
         "teacher.arch": "--teacher(s)", "teacher.checkpoint": "--teacher(s)", "student.arch": "--student"}

METHODS = ("single", "ensemble_kd", "feed", "sfeed", "rco")


def method_config(base: Config, method: str, teachers: list[dict], args) -> Config:
    """The recipe for one method; only the teacher side (and FEED's loss) changes."""
    c = copy.deepcopy(base)
    best = max(teachers, key=lambda t: t["teacher_acc"])
    c.name, c.train.transfer = method, args.transfer
    members = [{"arch": t["arch"], "checkpoint": t["checkpoint"]} for t in teachers]
    if method in ("single", "rco"):
        c.teacher.kind, c.teacher.arch, c.teacher.checkpoint = "single", best["arch"], best["checkpoint"]
    if method == "rco":
        c.teacher.kind, c.teacher.params = "route", {"schedule": args.rco_schedule, "invert": args.rco_invert}
    if method in ("ensemble_kd", "feed", "sfeed"):
        c.teacher.kind, c.teacher.members = "ensemble", members
    if method in ("feed", "sfeed"):  # ensemble_kd: the same ensemble without FEED's term (its ablation)
        c.distill = [*c.distill, TermConfig("feed", args.feed_weight)]
    return c


def stage_members(config: Config) -> list[Config]:
    """sfeed's stages as single-teacher recipes (for timing)."""
    from datafree.cli.feed import stage_config

    return [stage_config(config, m, k, Path("unused"), 0.0) for k, m in enumerate(config.teacher.members)]


def equal_time_steps(configs: dict[str, Config], steps: int) -> dict[str, int]:
    """Per method, the steps that take as long as ``steps`` of single's (sfeed: per stage), timed back to back."""
    from datafree.pipeline import seconds_per_step

    seconds = {}
    for method, c in configs.items():
        probes = stage_members(c) if method == "sfeed" else [c]
        seconds[method] = sum(seconds_per_step(p) for p in probes)  # sfeed: one step of every stage
        print(f"timing: {method} {seconds[method]:.3f} s per step{' (all stages)' if method == 'sfeed' else ''}")
    budget = steps * seconds.get("single", min(seconds.values()))
    return {method: max(1, round(budget / t)) for method, t in seconds.items()}


def run_method(config: Config, method: str, seeds: int, minutes: float, root: Path, steps: int = 0) -> dict:
    from datafree.build import reset_accelerate
    from datafree.pipeline import distill_from_config
    from datafree.report import spread
    from datafree.cli.feed import run_stages

    runs = []
    for seed in range(seeds):
        c = copy.deepcopy(config)
        c.train.seed, c.train.output_dir, c.train.overwrite = seed, str(root / method / f"seed_{seed}"), True
        start = time.perf_counter()
        print(f"== {method}, seed {seed}", flush=True)
        if steps:
            c.train.steps, c.train.max_minutes, minutes = steps, 0.0, 0.0
        if method == "sfeed":
            stages = run_stages(c, Path(c.train.output_dir), minutes / len(c.teacher.members))
            results = {**stages[-1], "stages": stages, "steps": [s["steps"] for s in stages]}
        else:
            c.train.max_minutes = minutes
            results = distill_from_config(c)
            reset_accelerate()
        results["total_s"] = round(time.perf_counter() - start, 1)
        runs.append(results)
    return {"method": method, "steps": runs[0]["steps"], "final": spread([r["student_acc_final"] for r in runs]),
            "best": spread([r["student_acc_best"] for r in runs]), "wall_s": [r["total_s"] for r in runs], "runs": runs}


def table(teachers: list[dict], rows: list[dict], transfer: str) -> str:
    pct = lambda s: f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"  # noqa: E731
    lines = ["| teacher | seed | test accuracy |", "|---|---:|---:|"]
    lines += [f"| {t['arch']} | {t['seed']} | {100 * t['teacher_acc']:.2f} |" for t in teachers]
    lines += ["", f"| method ({transfer} transfer set) | student final | student best | steps | wall s per seed |",
              "|---|---:|---:|---:|---|"]  # fmt: skip
    lines += [f"| {r['method']} | {pct(r['final'])} | {pct(r['best'])} | {r.get('steps', '')} | "
              f"{'/'.join(f'{w:.0f}' for w in r['wall_s'])} |" for r in rows]  # fmt: skip
    return "\n".join(lines)



def record_rows(teachers: list[dict], rows: list[dict], configs: dict[str, Config], budget: dict,
                args: argparse.Namespace, argv: list[str] | None) -> Path:  # fmt: skip
    """The table's per-seed figures and the settings of each row, with their provenance (results/NAME.json).
    ``budget``: {"minutes"} per run, or {"single_steps", "steps"}: single's steps and each method's equal-time steps."""
    from datafree.io.results import record, results_path

    best = max(teachers, key=lambda t: t["teacher_acc"])  # single's and rco's (method_config); the others: all
    names = {m: f"{best['arch']}@{best['seed']}" if m in ("single", "rco") else "all" for m in configs}
    compact = [{"method": r["method"], "teacher": names[r["method"]], "teacher_kind": configs[r["method"]].teacher.kind,
                "distill": [t.name for t in configs[r["method"]].distill],
                "steps_per_seed": [run["steps"] for run in r["runs"]],
                "final_per_seed": [run["student_acc_final"] for run in r["runs"]],
                "best_per_seed": [run["student_acc_best"] for run in r["runs"]], "wall_s": r["wall_s"]} for r in rows]  # fmt: skip
    table = {"recipe": recipe_label(args.recipe, ROOT), "preset": configs[rows[0]["method"]].preset,
             "student": args.student, "transfer": args.transfer,
             "seeds": list(range(args.seeds)), "budget": budget,
             "feed_weight": args.feed_weight, "rco": {"schedule": args.rco_schedule, "invert": args.rco_invert},
             "smoke": args.smoke, "teachers": [{k: t[k] for k in ("arch", "seed", "teacher_acc")} for t in teachers],
             "rows": compact}  # fmt: skip
    return record(results_path(args.record, ROOT), table, ROOT,
                  ["runs/bench_teacher_methods.py", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    from datafree.io.checkpoint import atomic_write_text
    from datafree.pipeline import hardware

    parser = bench_parser(__doc__, recipe="zoo", seeds=3, output_root="outputs/bench_methods")
    parser.add_argument("--teachers", default="lenet5@0,lenet5@1,lenet5@2,vgg_bn@0")
    parser.add_argument("--student", default="lenet5_half")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--transfer", default="synthetic", choices=("synthetic", "real"))
    parser.add_argument("--minutes", type=float, default=5.0, help="loop budget of each run (sfeed: of all stages)")
    parser.add_argument("--steps", type=int, default=0, help="single's steps; the others' by timed equal wall time")
    parser.add_argument("--teacher-epochs", type=int, default=0, help="teacher training epochs (default: the recipe's)")
    parser.add_argument("--feed-weight", type=float, default=1.0)
    parser.add_argument("--rco-schedule", default="equal", choices=("equal", "plateau"))
    parser.add_argument("--rco-invert", default="final", choices=("final", "anchor"), help="the teacher G inverts")
    args = parse(parser, argv, owned={**OWNED, "train.max_minutes": "--minutes", "teacher.kind": "--methods",
                                      "teacher.members": "--teachers", "train.transfer": "--transfer"})  # fmt: skip
    methods = [m for m in args.methods.split(",") if m]
    if set(methods) - set(METHODS) or len(args.teachers.split(",")) < 2:
        parser.error(f"--methods takes {','.join(METHODS)}; --teachers needs at least two arch@seed entries")
    base, root = load_recipe(args.recipe), Path(args.output_root)
    base.student.arch = args.student
    if args.teacher_epochs:
        base.teacher_training.epochs = args.teacher_epochs
    minutes = args.minutes
    if args.smoke:
        from datafree.config.smoke import smoke_config

        base, minutes = smoke_config(base), 0.02
    base = overridden(base, args)
    teachers = trained_teachers(base, args.teachers.split(","), root)
    configs = {m: method_config(base, m, teachers, args) for m in methods}
    single_steps = (4 if args.smoke else args.steps) if args.steps else 0
    steps = equal_time_steps(configs, single_steps) if single_steps else {}
    rows = [run_method(configs[m], m, args.seeds, minutes, root, steps.get(m, 0)) for m in methods]
    command = " ".join(["python runs/bench_teacher_methods.py", *(sys.argv[1:] if argv is None else argv)])
    budget = f"equal wall time by timed steps ({steps})" if steps else f"{minutes} min per run"
    text = f"{table(teachers, rows, args.transfer)}\n\n{args.seeds} seed(s), {budget}; {hardware()}.\n\n`{command}`\n"
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "table.md", text)
    atomic_write_text(root / "results.json", json.dumps({"teachers": teachers, "rows": rows, "command": command,
                                                        "hardware": hardware(), "transfer": args.transfer}, indent=2))  # fmt: skip
    if args.record:
        limit = {"single_steps": single_steps, "steps": steps} if steps else {"minutes": minutes}
        print(f"figures recorded in {record_rows(teachers, rows, configs, limit, args, argv)}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
