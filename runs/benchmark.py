"""One command per paper benchmark: teacher (trained, or loaded if present), data-free distillation for each
seed, evaluation on the real test set, and a report beside the paper's figure.

    python runs/benchmark.py mnist                 # DAFL's MNIST setting, 3 seeds -> outputs/mnist/
    python runs/benchmark.py cifar10 --seeds 1 --train.steps 12000
    python runs/benchmark.py celeba --smoke        # < 1 min on generated stand-in data -> outputs/celeba-smoke/

Recipes: runs/<recipe>.toml (mnist, fmnist, cifar10, cifar100, celeba, or a path to any recipe). Any recipe value
can be overridden with --section.key (after --smoke's own overrides). Writes, under outputs/<recipe>[-smoke]/:
teacher/ (checkpoint, shared by the seeds), seed_<k>/ (one full run each, with its own report.md),
results.json (machine-readable summary) and report.md (ours, final and best, mean ± std, beside the paper).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from datafree.config import Config, ConfigError, load_toml
from datafree.config.smoke import SMOKE_FAKE_IMAGES, smoke_config  # noqa: F401  (the smoke chain, shared by the scripts)
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args

RECIPES = ("mnist", "fmnist", "cifar10", "cifar100", "celeba", "cifar10_ternary")
_DAFL = "Chen et al., Data-Free Learning of Student Networks, ICCV 2019"
# The paper's data-free student accuracy (best test epoch, as the official code prints it) for each recipe.
PAPER: dict[str, dict] = {
    "mnist": {"student_acc": 0.9820, "source": f"{_DAFL}, MNIST results, LeNet-5 -> LeNet-5-half"},
    "cifar10": {"student_acc": 0.9222, "source": f"{_DAFL}, CIFAR results, ResNet-34 -> ResNet-18"},
    "cifar100": {"student_acc": 0.7447, "source": f"{_DAFL}, CIFAR results, ResNet-34 -> ResNet-18"},
    "celeba": {"student_acc": 0.8056, "source": f"{_DAFL}, CelebA results, AlexNet -> AlexNet-half"},
    "cifar10_ternary": {"student_acc": 0.927, "source": "Shin et al., Empirical Analysis of Knowledge Distillation "
                        "Technique for Optimization of Quantized DNNs: ResNet-20, ternary weights, WITH the training data"},
    "fmnist": {
        "student_acc": None,
        "source": "n/a: the DAFL paper has no Fashion-MNIST experiment",
        "reference": {"student_acc": 0.796, "label": "ZSKD (Nayak et al., ICML 2019): another zero-shot method "
                      "with a larger student, not DAFL and not comparable one to one"},  # fmt: skip
    },
}


def recipe_path(recipe: str) -> Path:
    """``mnist`` -> runs/mnist.toml; anything ending in .toml is taken as a path."""
    return Path(recipe) if recipe.endswith(".toml") else ROOT / "runs" / f"{recipe}.toml"


def _fresh_accelerate_state() -> None:
    """Teacher training and each seed build their own Accelerator (possibly another precision); keep processes."""
    from datafree.build import reset_accelerate

    reset_accelerate()


def get_teacher(config: Config, retrain: bool) -> dict:
    """Train the recipe's teacher unless its checkpoint exists; say which happened and how long it took."""
    from datafree.supervised import found_teacher_note, teacher_record, train_teacher

    path = Path(config.teacher_checkpoint)
    if path.exists() and not retrain:
        print(f"== teacher found: {path}")
        saved = teacher_record(path)
        if note := found_teacher_note(config, saved):
            print(f"   note: {note}")
        return {"source": "loaded", "checkpoint": str(path), "epochs": saved.get("epochs")}
    print(f"== training the teacher: {config.teacher.arch} on real {config.data.name} ({config.teacher_training.epochs} epochs)")
    start = time.perf_counter()
    result = train_teacher(config)
    _fresh_accelerate_state()
    return {"source": "trained", "checkpoint": str(path), "epochs": result["epochs"],
            "wall_time_s": round(time.perf_counter() - start, 1), "trained_acc": result["teacher_acc"]}  # fmt: skip


def summarize(recipe: str, config: Config, recipe_file: str, teacher: dict, runs: list[dict], smoke: bool) -> dict:
    """The benchmark's results.json: per-seed figures, mean/std over seeds, budget, machine, the paper's figure."""
    from datafree.report import spread

    best = spread([r["student_acc_best"] for r in runs])
    final = spread([r["student_acc_final"] for r in runs])
    paper = PAPER.get(recipe, {"student_acc": None, "source": "n/a: no paper figure registered for this recipe"})
    walls = [r["wall_time_s"] for r in runs]
    diff = lambda ours: None if ours is None or paper.get("student_acc") is None else ours - paper["student_acc"]  # noqa: E731
    return {
        "recipe": recipe,
        "recipe_file": recipe_file,
        "smoke": smoke,
        "dataset": config.data.name if config.data.name != "fake" else f"fake (like {config.data.like})",
        "teacher_arch": config.teacher.arch,
        "student_arch": config.student.arch,
        "seeds": [r["seed"] for r in runs],
        "teacher": teacher,
        "teacher_acc": runs[0]["teacher_acc"],
        "student_acc_final": final,
        "student_acc_best": best,
        "student_acc_best_is": "max real test accuracy over evaluations every eval_every steps (selects on the test set, as DAFL reports)",
        "student_acc_final_is": "real test accuracy of the student after the last step",
        "paper": paper,
        "diff_vs_paper": {"best": diff(best["mean"]), "final": diff(final["mean"])},
        "steps": runs[0]["steps"],
        "batch_size": config.train.batch_size,
        "student_steps_per_step": config.train.student_steps,
        "eval_every": config.train.eval_every,
        "num_processes": runs[0]["num_processes"],
        "images_generated": runs[0]["images_generated"],
        "images_generated_total": sum(r["images_generated"] for r in runs),
        "wall_time_s": {"per_seed": walls, "mean": sum(walls) / len(walls), "total": sum(walls)},
        "mixed_precision": runs[0]["mixed_precision"],
        "hardware": runs[0]["hardware"],
        "runs": runs,
    }


def run_benchmark(recipe: str, seeds: int, smoke: bool = False, output_root: str | Path = "outputs",
                  overrides: argparse.Namespace | None = None, retrain_teacher: bool = False) -> dict:  # fmt: skip
    """Teacher -> one data-free run per seed -> summary results.json + report.md; returns the summary."""
    from accelerate import PartialState

    from datafree.io.checkpoint import atomic_write_text
    from datafree.supervised import ensure_for_recipe
    from datafree.pipeline import distill_from_config
    from datafree.report import write_summary

    start = time.perf_counter()
    path = recipe_path(recipe)
    name = path.stem
    config = load_toml(path)
    if smoke:
        config = smoke_config(config)
    if overrides is not None:
        config = apply_overrides(config, overrides)
    root = Path(output_root) / (f"{name}-smoke" if smoke else name)
    if not config.teacher.checkpoint:
        config.teacher.checkpoint = str(root / "teacher" / "teacher.safetensors")
    teacher = get_teacher(config, retrain_teacher)
    ensure_for_recipe(config)  # a teacher trained before train_teacher.py wrote its feature statistics
    runs = []
    for seed in range(seeds):
        c = copy.deepcopy(config)
        c.name, c.train.seed, c.train.output_dir = f"{name}-seed{seed}", seed, str(root / f"seed_{seed}")
        c.train.overwrite = True  # a rerun of the benchmark replaces its seeds
        print(f"== seed {seed + 1}/{seeds}: data-free distillation into {c.student.arch} (no training image is used)")
        _fresh_accelerate_state()
        results = distill_from_config(c)
        runs.append({**results, "seed": seed, "run_dir": f"seed_{seed}"})
    rel = path.relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
    summary = summarize(name, config, str(rel), teacher, runs, smoke)
    summary["benchmark_wall_time_s"] = round(time.perf_counter() - start, 1)  # teacher + seeds + evaluations
    if PartialState().is_main_process:
        atomic_write_text(root / "results.json", json.dumps(summary, indent=2))
        write_summary(root, summary)
    return summary


def record_summary(summary: dict, name: str, argv: list[str]) -> Path:
    """The summary's figures without the bulky parts (confusion matrices, paths), with their provenance."""
    from datafree.io.results import record, results_path

    keep = ("seed", "teacher_acc", "student_acc_final", "student_acc_best", "best_step", "steps", "wall_time_s",
            "images_generated", "class_acc", "teacher_params", "student_params", "preset", "uses", "mixed_precision")
    runs = [{k: r[k] for k in keep if k in r} for r in summary["runs"]]
    table = {k: summary[k] for k in ("recipe", "recipe_file", "dataset", "teacher_arch", "student_arch", "seeds",
                                     "teacher", "student_acc_final", "student_acc_best", "paper") if k in summary}
    names = summary["runs"][0].get("class_names")
    return record(results_path(name, ROOT), {**table, **({"class_names": names} if names else {}), "runs": runs}, ROOT,
                  ["runs/benchmark.py", *argv])


def main(argv: list[str] | None = None) -> int:
    """CLI entry: run the benchmark; recipe and data errors become one line on stderr and exit code 2."""
    from datafree.io.checkpoint import CheckpointError
    from datafree.data import DataMissingError
    from datafree.trainer import NonFiniteLossError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help=f"one of {', '.join(RECIPES)}, or a path to a recipe .toml")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..N-1 (default 3; 1 with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny end-to-end run on generated stand-in data (< 1 min)")
    parser.add_argument("--output-root", default="outputs", help="parent of outputs/<recipe>[-smoke]/ (default outputs)")
    parser.add_argument("--retrain-teacher", action="store_true", help="train the teacher even if its checkpoint exists")
    parser.add_argument("--record", default="", metavar="NAME", help="also write the figures to results/NAME.json "
                        "(a path ending in .json: there), which runs/tables.py renders into the README and docs/")
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    seeds = args.seeds if args.seeds is not None else (1 if args.smoke else 3)
    if seeds < 1:
        parser.error("--seeds must be >= 1")
    if not recipe_path(args.recipe).exists():
        parser.error(f"no recipe {recipe_path(args.recipe)}; choose one of {', '.join(RECIPES)} or pass a .toml path")
    start = time.perf_counter()
    try:
        summary = run_benchmark(args.recipe, seeds, args.smoke, args.output_root, args, args.retrain_teacher)
    except (ConfigError, CheckpointError, DataMissingError, NonFiniteLossError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.record:
        path = record_summary(summary, args.record, sys.argv[1:] if argv is None else list(argv))
        print(f"figures recorded in {path}")
    pct = lambda s: f"{100 * s['mean']:.2f}% ± {100 * s['std']:.2f}"  # noqa: E731
    paper = summary["paper"].get("student_acc")
    print(f"teacher {100 * summary['teacher_acc']:.2f}%; student over {len(summary['runs'])} seed(s): "
          f"final {pct(summary['student_acc_final'])}, best {pct(summary['student_acc_best'])}; "
          f"paper {'n/a' if paper is None else f'{100 * paper:.2f}%'}; {time.perf_counter() - start:.0f} s")  # fmt: skip
    root = Path(args.output_root) / (f"{recipe_path(args.recipe).stem}-smoke" if args.smoke else recipe_path(args.recipe).stem)
    print(f"report: {root / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
