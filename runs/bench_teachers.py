"""One recipe, every teacher of the zoo: is the data-free default robust beyond the pair it was tuned on?

    python runs/bench_teachers.py [--recipe runs/fmnist.toml] [--seeds 3] [--minutes 10]
        [--pairs lenet5:lenet5_half,vgg_bn:vgg_bn_small,resnet20:resnet8_narrow,mobilenet_small:mobilenet_tiny]
        [--teacher-epochs N] [--output-root outputs/bench_teachers] [--smoke]

For each teacher -> student pair: the teacher is trained once on the real data by the recipe's
[teacher_training] (train_teacher.py's path; it records per-class feature statistics beside it), then the
SAME recipe (no per-pair tuning; only teacher.arch and student.arch change) distills each seed with a
wall-time budget (train.max_minutes: the step count is fixed before step 0). Writes table.md and results.json
under --output-root: teacher accuracy, student final and best (mean +- std over seeds), the worst class
(student, and the teacher on it), the generator's class coverage over the last 10% of steps (the rarest
class's share; K classes -> 1/K when balanced), steps and wall time. --smoke runs the chain in seconds on
generated stand-in data (numbers meaningless).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datafree.config import Config, load_toml  # noqa: E402

PAIRS = "lenet5:lenet5_half,vgg_bn:vgg_bn_small,resnet20:resnet8_narrow,mobilenet_small:mobilenet_tiny"


def pair_config(base: Config, teacher: str, student: str, root: Path, smoke: bool) -> Config:
    """The recipe with only the networks (and where things are written) changed."""
    c = copy.deepcopy(base)
    c.name = f"{teacher}-{student}"
    c.teacher.arch, c.student.arch = teacher, student
    c.teacher.checkpoint = str(root / "teachers" / teacher / "teacher.safetensors")
    if smoke:
        c.data.name, c.data.like, c.data.fake_size, c.data.eval_batch_size = "fake", c.data.name, 64, 64
        c.teacher_training.epochs, c.teacher_training.batch_size = 1, 16
        c.teacher.checkpoint = str(root / "teachers-smoke" / teacher / "teacher.safetensors")
        t = c.train
        t.batch_size, t.student_steps, t.eval_every, t.log_every, t.sample_every, t.checkpoint_every = 8, 2, 2, 1, 4, 4
        c.generator.width, t.channels_last = 8, False
    return c


def teacher_for(config: Config) -> float:
    """Train the pair's teacher unless it exists; its real test accuracy."""
    from datafree.build import reset_accelerate
    from datafree.supervised import train_teacher

    path = Path(config.teacher_checkpoint)
    if not path.exists():
        print(f"== training teacher {config.teacher.arch} ({config.teacher_training.epochs} epochs)", flush=True)
        train_teacher(config)
        reset_accelerate()
    return json.loads(path.with_suffix(".json").read_text())["teacher_acc"]


def run_pair(config: Config, seeds: int, minutes: float, root: Path) -> dict:
    from datafree.build import reset_accelerate
    from datafree.pipeline import distill_from_config
    from datafree.report import spread

    teacher_acc = teacher_for(config)
    runs = []
    for seed in range(seeds):
        c = copy.deepcopy(config)
        t = c.train
        t.seed, t.output_dir, t.overwrite, t.max_minutes = seed, str(root / c.name / f"seed_{seed}"), True, minutes
        print(f"== {c.name}, seed {seed}", flush=True)
        start = time.perf_counter()
        results = distill_from_config(c)
        reset_accelerate()
        results["total_s"] = round(time.perf_counter() - start, 1)
        runs.append(results)
    student = [r["class_acc"]["student"] for r in runs]
    teacher = runs[0]["class_acc"]["teacher"]
    mean_per_class = [sum(s[k] for s in student) / len(student) for k in range(len(teacher))]
    worst = min(range(len(teacher)), key=lambda k: mean_per_class[k])
    return {"pair": config.name, "teacher": config.teacher.arch, "student": config.student.arch,
            "teacher_acc": teacher_acc, "final": spread([r["student_acc_final"] for r in runs]),
            "best": spread([r["student_acc_best"] for r in runs]), "worst_class": worst,
            "worst_class_student": mean_per_class[worst], "worst_class_teacher": teacher[worst],
            "classes_below_half_teacher": [k for k in range(len(teacher)) if mean_per_class[k] < teacher[k] / 2],
            "min_coverage": [min(r["class_coverage"]) for r in runs], "steps": [r["steps"] for r in runs],
            "wall_s": [r["total_s"] for r in runs], "runs": runs}  # fmt: skip


def table(rows: list[dict], names: list[str]) -> str:
    pct = lambda s: f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"  # noqa: E731
    lines = ["| teacher -> student | teacher | student final | student best | worst class: student / teacher "
             "| classes < half the teacher's | rarest class share (1/K = balanced) | steps | wall s per seed |",
             "|---|---:|---:|---:|---|---|---:|---|---|"]  # fmt: skip
    for r in rows:
        k = r["worst_class"]
        below = ", ".join(names[c] for c in r["classes_below_half_teacher"]) or "none"
        lines.append(f"| {r['teacher']} -> {r['student']} | {100 * r['teacher_acc']:.2f} | {pct(r['final'])} | "
                     f"{pct(r['best'])} | {names[k]}: {100 * r['worst_class_student']:.1f} / "
                     f"{100 * r['worst_class_teacher']:.1f} | {below} | {min(r['min_coverage']):.3f} | "
                     f"{'/'.join(map(str, r['steps']))} | {'/'.join(f'{w:.0f}' for w in r['wall_s'])} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from datafree.checkpoint import atomic_write_text
    from datafree.data import dataset_info
    from datafree.pipeline import hardware

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(ROOT / "runs" / "fmnist.toml"))
    parser.add_argument("--pairs", default=PAIRS, help="comma-separated teacher:student registry names")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-time budget of each run's loop")
    parser.add_argument("--output-root", default="outputs/bench_teachers")
    parser.add_argument("--teacher-epochs", type=int, default=0, help="teacher training epochs (default: the recipe's)")
    parser.add_argument("--smoke", action="store_true", help="generated stand-in data, seconds per pair")
    args = parser.parse_args(argv)
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",") if p]
    if any(len(p) != 2 for p in pairs):
        parser.error(f"--pairs takes teacher:student names, got {args.pairs!r}")
    base, root = load_toml(args.recipe), Path(args.output_root)
    minutes = 0.02 if args.smoke and args.minutes == 10.0 else args.minutes
    if args.teacher_epochs:
        base.teacher_training.epochs = args.teacher_epochs
    rows = [run_pair(pair_config(base, t, s, root, args.smoke), args.seeds, minutes, root) for t, s in pairs]
    names = list(dataset_info(base.data.name, like=base.data.like or None).class_names)
    text = (f"{table(rows, names)}\n\nRecipe {args.recipe} unchanged but for the networks; {args.seeds} seed(s), "
            f"{minutes} min loop budget per run; {hardware()}.\n")  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "table.md", text)
    atomic_write_text(root / "results.json", json.dumps({"rows": rows, "recipe": args.recipe, "hardware": hardware(),
                                                        "smoke": args.smoke, "minutes": minutes}, indent=2))  # fmt: skip
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
