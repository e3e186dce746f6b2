"""Same data-free budget, one student objective at a time: KD alone, then KD + each feature loss.

    python runs/compare_losses.py [--recipe fmnist] [--seeds 2] [--steps 300] [--only kd,nst] [--record NAME] [--smoke]
        [--section.key value]

Writes outputs/loss_zoo/table.md (mean and spread over seeds of final and best student accuracy, wall
time) and results.json; every run's own folder is outputs/loss_zoo/<loss>/seed_<k>/. ``--record NAME`` also writes
the per-seed figures with their provenance to results/NAME.json (datafree.io.results). ``--section.key`` overrides
change the recipe every objective runs on; --smoke runs the chain in seconds on generated stand-in data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from datafree.bench.args import bench_parser, load_recipe, overridden, parse, recipe_label
from datafree.config import LossConfig

ROOT = Path(__file__).resolve().parents[1]



def feature_losses() -> dict[str, tuple[float, dict]]:
    """name -> (weight, params) of every registered loss that declares a ``benchmark`` entry (kd is the baseline)."""
    from datafree.distill import list_losses, loss_class

    entries = {name: loss_class(name).benchmark for name in list_losses() if name != "kd"}
    return {name: (e["weight"], dict(e["params"])) for name, e in entries.items() if e}


def objectives(only: list[str] | None) -> dict[str, list[LossConfig]]:
    runs = {"kd": [LossConfig("kd")]}
    for name, (weight, params) in feature_losses().items():
        runs[f"kd+{name}"] = [LossConfig("kd"), LossConfig(name, weight=weight, params=dict(params))]
    return {k: v for k, v in runs.items() if not only or k.split("+")[-1] in only}


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def record_rows(rows: list[dict], terms: dict[str, list[LossConfig]], args: argparse.Namespace, dataset: str,
                batch_size: int, argv: list[str] | None) -> Path:  # fmt: skip
    """The table's per-seed figures and what defines each row (its loss terms), with their provenance."""
    from datafree.io.results import record, results_path

    table = {"recipe": recipe_label(args.recipe, ROOT),
             "dataset": dataset, "steps": args.steps, "batch_size": batch_size, "seeds": list(range(args.seeds)),
             "rows": [{"objective": r["objective"], "distill": [asdict(t) for t in terms[r["objective"]]],
                       "final_per_seed": r["final"], "best_per_seed": r["best"], "wall_s": r["wall_time_s"]}
                      for r in rows]}  # fmt: skip
    return record(results_path(args.record, ROOT), table, ROOT,
                  ["runs/compare_losses.py", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    from datafree.build import reset_accelerate
    from datafree.pipeline import distill_from_config, hardware

    parser = bench_parser(__doc__, recipe="fmnist", seeds=2, output_root="outputs/loss_zoo")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=0, help="per-step batch (default: the recipe's)")
    parser.add_argument("--only", default="", help="comma-separated loss names (kd is always the baseline)")
    args = parse(parser, argv, owned={"train.steps": "--steps", "train.seed": "--seeds", "train.batch_size": "--batch-size",
                                      "train.output_dir": "--output-root", "distill": "--only"})  # fmt: skip
    base = load_recipe(args.recipe)
    if args.smoke:
        from datafree.config.smoke import smoke_config

        base = smoke_config(base)
        args.steps, args.batch_size = base.train.steps, base.train.batch_size
    base = overridden(base, args)
    root = Path(args.output_root)
    rows, started = [], time.perf_counter()
    terms = objectives([s for s in args.only.split(",") if s])
    for label, losses in terms.items():
        finals, bests, times = [], [], []
        for seed in range(args.seeds):
            out = root / label.replace("+", "_") / f"seed_{seed}"
            train = replace(base.train, steps=args.steps, seed=seed, output_dir=str(out), overwrite=True,
                            batch_size=args.batch_size or base.train.batch_size,
                            eval_every=max(1, args.steps // 4), sample_every=args.steps, checkpoint_every=args.steps)  # fmt: skip
            config = replace(base, name=f"{base.name}-{label}", train=train, distill=losses)
            result = distill_from_config(config)
            reset_accelerate()
            finals.append(result["student_acc_final"])
            bests.append(result["student_acc_best"])
            times.append(result["wall_time_s"])
        rows.append({"objective": label, "final": finals, "best": bests, "wall_time_s": times})
        print(f"{label}: final {spread(finals)}  best {spread(bests)}")
    lines = [
        f"Student accuracy (%) on the real {base.data.name} test set after {args.steps} data-free steps "
        f"(batch {args.batch_size or base.train.batch_size}, recipe `{args.recipe}`), mean ± std over {args.seeds} "
        f"seeds. Produced by `python runs/compare_losses.py --recipe {args.recipe} --seeds {args.seeds} "
        f"--steps {args.steps}{f' --batch-size {args.batch_size}' if args.batch_size else ''}` "
        f"on {hardware()}.",
        "",
        "| student objective | final | best | wall time per run (s) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['objective']} | {spread(row['final'])} | {spread(row['best'])} | "
                     f"{statistics.fmean(row['wall_time_s']):.0f} |")  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    (root / "table.md").write_text("\n".join(lines) + "\n")
    (root / "results.json").write_text(json.dumps({"rows": rows, "steps": args.steps, "hardware": hardware(),
                                                   "total_s": time.perf_counter() - started}, indent=2))  # fmt: skip
    if args.record:
        path = record_rows(rows, terms, args, base.data.name, args.batch_size or base.train.batch_size, argv)
        print(f"figures recorded in {path}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
