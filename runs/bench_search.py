"""Does a student found inside the teacher beat a hand-designed one at equal FLOPs? (issue "Search for a better student")

    python runs/bench_search.py [--recipe zoo] [--teacher lenet5@0] [--seeds 3] [--steps 250]
        [--search-steps 300] [--budgets 1.0,0.5] [--kinds hand,searched] [--l1 0.05[,...]] [--fixed-l1]
        [--teacher-epochs N] [--output-root outputs/bench_search] [--smoke] [--record NAME]

For each budget (a fraction of LeNet-5-half's FLOPs, 133,740 multiply-adds per image in datafree/nets/flops.py's
convention), 3 seeds of:
- ``hand``: the hand-designed student at that budget (LeNet-5-half at 1.0; LeNet-5 at a third of its widths,
  2-5-40-28, 70.6K FLOPs, at 0.5), distilled data-free with the recipe for ``--steps`` steps;
- ``searched``: runs/search_student.py's search on the teacher (data-free, at most ``--search-steps`` steps,
  stopping at the budget) and the found architecture distilled with the same recipe and steps (fresh weights).
The table gives final and best accuracy (mean +- std), FLOPs and parameters of each student, and the search's and
the distillation's wall time apart; a search that diverges (NaN/inf) is named in its row and the other seeds
still run.

The L1 weight's sensitivity (Gu & Tresp's Fig. 6: a small weight takes more epochs and finds better students):
``--kinds searched --l1 0.02,0.1,0.5 --fixed-l1 --search-steps 1500`` gives one searched row per weight, each with
lambda fixed (``patience = 0``, as the paper) instead of our growth by 1.5x while the search stalls; a row says how
many steps each seed's search took and whether it reached the budget (a search that did not stops at
``--search-steps`` with more FLOPs than the budget, and its student is distilled anyway, named as such). Writes table.md and results.json under --output-root; ``--record NAME`` also writes the per-seed figures
with their provenance to results/NAME.json (datafree.io.results).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from datafree.bench.args import bench_parser, parse, recipe_label
from datafree.bench.common import search_steps_label, search_weight_label
from datafree.config import Config

ROOT = Path(__file__).resolve().parents[1]
# recipe keys each run sets from this script's own options (an override of one is refused, naming the option)
OWNED = {"train.steps": "--steps", "train.seed": "--seeds", "train.output_dir": "--output-root",
         "teacher.arch": "--teacher", "teacher.checkpoint": "--teacher", "student.arch": "--budgets"}


LENET5_HALF_FLOPS = 133_740
HAND = {1.0: ("lenet5_half", {}), 0.5: ("lenet5", {"widths": [2, 5, 40, 28]})}


def hand_row(base: Config, budget: float, seeds: int, root: Path) -> dict:
    from datafree.build import image_spec, build_net, reset_accelerate
    from datafree.nets.flops import layer_costs, parameter_count, total_macs
    from datafree.pipeline import distill_from_config

    import torch

    arch, kwargs = HAND[budget]
    runs = []
    for seed in range(seeds):
        c = copy.deepcopy(base)
        c.student.arch, c.student.kwargs, c.train.seed = arch, dict(kwargs), seed
        c.train.output_dir, c.train.overwrite = str(root / f"hand_{budget}" / f"seed_{seed}"), True
        print(f"== hand-designed {arch} {kwargs}, budget {budget}, seed {seed}", flush=True)
        runs.append(distill_from_config(c))
        reset_accelerate()
    spec = image_spec(base)
    net = build_net(arch, spec, **kwargs)
    flops = total_macs(layer_costs(net, torch.zeros(1, spec.channels, spec.image_size, spec.image_size)))
    return summarize("hand", budget, runs, flops, parameter_count(net), [0.0] * seeds,
                     [r["wall_time_s"] for r in runs], f"{arch} {kwargs or ''}".strip())  # fmt: skip


def searched_row(base: Config, budget: float, seeds: int, root: Path, search_steps: int, smoke: bool,
                 l1: float | None = None, fixed_l1: bool = False) -> dict:  # fmt: skip
    """``l1`` None: the search's default weight (and folder ``searched_<budget>``); else that weight, in a folder of
    its own. ``fixed_l1``: lambda never grows (``patience = 0``, the paper's rule)."""
    from datafree.build import reset_accelerate
    from datafree.cli.search import SearchSettings, run

    from datafree.trainer import NonFiniteLossError

    runs, search_s, distill_s, found, diverged = [], [], [], [], []
    folder = f"searched_{budget}" + ("" if l1 is None else f"_l1_{l1:g}") + ("_fixed" if fixed_l1 else "")
    for seed in range(seeds):
        c = copy.deepcopy(base)
        c.train.seed = seed
        settings = SearchSettings(target_flops=budget * LENET5_HALF_FLOPS, steps=search_steps)
        if l1 is not None:
            settings.l1 = l1
        if fixed_l1:
            settings.patience = 0
        if smoke and l1 is None:  # a weight that closes channels within the smoke run's few steps
            settings.l1 = 0.5
        print(f"== searched, budget {budget}, l1 {settings.l1:g}{' fixed' if fixed_l1 else ''}, seed {seed}", flush=True)
        try:
            summary = run(c, settings, root / folder / f"seed_{seed}")
        except NonFiniteLossError as err:  # a diverged search is a result: recorded, the other seeds still run
            print(f"   diverged: {err}", flush=True)
            diverged.append(seed)
            reset_accelerate()
            continue
        reset_accelerate()
        runs.append(summary["distill"])
        search_s.append(summary["search"]["wall_time_s"])
        distill_s.append(summary["distill"]["wall_time_s"])
        found.append(summary["search"])
    done = [s for s in range(seeds) if s not in diverged]
    if not done:
        return {"kind": "searched", "budget": budget, "student": f"diverged on every seed {diverged}", "flops": 0,
                "params": 0, "final": None, "best": None, "search_s": [], "distill_s": [], "diverged": diverged,
                "l1": settings.l1, "l1_fixed": fixed_l1, "reached": []}  # fmt: skip
    found_archs = [json.loads((root / folder / f"seed_{s}" / "search" / "architecture.json").read_text())
                   for s in done]  # fmt: skip
    widths = "; ".join(f"{a['arch']} {a['kwargs']}" for a in found_archs)
    widths += f" (diverged on seed(s) {diverged})" if diverged else ""
    row = summarize("searched", budget, runs, sum(f["flops"] for f in found) / len(done),
                    sum(f["params"] for f in found) / len(done), search_s, distill_s, widths)  # fmt: skip
    row["search_steps"], row["diverged"] = [f["steps"] for f in found], diverged
    row["l1"], row["l1_fixed"] = found[0]["settings"]["l1"], fixed_l1
    row["reached"] = [f["flops"] <= f["target_flops"] for f in found]
    return row


def summarize(kind: str, budget: float, runs: list[dict], flops: float, params: float, search_s: list[float],
              distill_s: list[float], student: str) -> dict:  # fmt: skip
    from datafree.report import spread

    return {"kind": kind, "budget": budget, "student": student, "flops": round(flops), "params": round(params),
            "final": spread([r["student_acc_final"] for r in runs]), "best": spread([r["student_acc_best"] for r in runs]),
            "search_s": search_s, "distill_s": distill_s}  # fmt: skip


def table(teacher: dict, rows: list[dict]) -> str:
    pct = lambda s: f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}" if s else "-"  # noqa: E731
    secs = lambda xs: "/".join(f"{x:.0f}" for x in xs)  # noqa: E731
    lines = [f"Teacher {teacher['arch']} (seed {teacher['seed']}): {100 * teacher['teacher_acc']:.2f}%.", "",
             "| budget (x LeNet-5-half FLOPs) | student | L1 weight | search steps | FLOPs | params | final | best | search s | distill s |",
             "|---|---|---|---|---:|---:|---:|---:|---|---|"]  # fmt: skip
    lines += [f"| {r['budget']} | {r['kind']}: {r['student']} | {search_weight_label(r)} | {search_steps_label(r)} | {r['flops']:,} | "
              f"{r['params']:,} | {pct(r['final'])} | {pct(r['best'])} | {secs(r['search_s'])} | {secs(r['distill_s'])} |"
              for r in rows]  # fmt: skip
    return "\n".join(lines)


def record_rows(teacher: dict, rows: list[dict], base: Config, search_steps: int, args: argparse.Namespace,
                argv: list[str] | None) -> Path:  # fmt: skip
    """The table's per-seed figures, each row with its budget and student, with their provenance (results/NAME.json).
    A searched row's seeds are those whose search did not diverge (``diverged`` names the others)."""
    from datafree.io.results import record, results_path

    compact = [{"kind": r["kind"], "budget": r["budget"], "student": r["student"], "flops": r["flops"],
                "params": r["params"], "seeds": [s for s in range(args.seeds) if s not in r.get("diverged", [])],
                "final_per_seed": r["final"]["values"] if r["final"] else [],
                "best_per_seed": r["best"]["values"] if r["best"] else [], "search_s": r["search_s"],
                "distill_s": r["distill_s"],
                **{k: r[k] for k in ("search_steps", "diverged", "l1", "l1_fixed", "reached") if k in r}} for r in rows]  # fmt: skip
    table = {"recipe": recipe_label(args.recipe, ROOT), "preset": base.preset, "steps": base.train.steps,
             "search_steps": search_steps,
             "seeds": list(range(args.seeds)), "smoke": args.smoke, "flops_reference": LENET5_HALF_FLOPS,
             "teacher": {k: teacher[k] for k in ("arch", "seed", "teacher_acc")}, "rows": compact}  # fmt: skip
    return record(results_path(args.record, ROOT), table, ROOT,
                  ["runs/bench_search.py", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    from datafree.io.checkpoint import atomic_write_text
    from datafree.pipeline import hardware
    from datafree.bench.common import fixed_steps_recipe

    parser = bench_parser(__doc__, recipe="zoo", seeds=3, output_root="outputs/bench_search")
    parser.add_argument("--teacher", default="lenet5@0")
    parser.add_argument("--steps", type=int, default=250, help="distillation steps of every student")
    parser.add_argument("--search-steps", type=int, default=300, help="at most this many search steps")
    parser.add_argument("--budgets", default="1.0,0.5", help=f"fractions of LeNet-5-half's FLOPs: {sorted(HAND)}")
    parser.add_argument("--kinds", default="hand,searched", help="rows per budget: hand, searched or both")
    parser.add_argument("--l1", default="", help="searched rows' L1 weights, comma-separated (default: the search's)")
    parser.add_argument("--fixed-l1", action="store_true", help="lambda never grows (patience 0, as the paper)")
    parser.add_argument("--teacher-epochs", type=int, default=0)
    args = parse(parser, argv, owned=OWNED)
    budgets = [float(b) for b in args.budgets.split(",") if b]
    if set(budgets) - set(HAND):
        parser.error(f"--budgets takes {sorted(HAND)}")
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - {"hand", "searched"}:
        parser.error(f"--kinds takes hand, searched or hand,searched; got {args.kinds!r}")
    try:
        weights = [float(w) for w in args.l1.split(",") if w] or [None]
    except ValueError:
        parser.error(f"--l1 takes comma-separated numbers, e.g. 0.02,0.1,0.5; got {args.l1!r}")
    if any(w is not None and w <= 0 for w in weights):
        parser.error(f"--l1: every weight must be > 0; got {args.l1!r}")
    root = Path(args.output_root)
    base, teacher = fixed_steps_recipe(args.recipe, args.steps, args.teacher_epochs, args.smoke, args.teacher, root, args)
    start = time.perf_counter()
    rows, search_steps = [], 4 if args.smoke else args.search_steps
    for budget in budgets:
        if "hand" in kinds:
            rows.append(hand_row(base, budget, args.seeds, root))
        if "searched" in kinds:
            rows += [searched_row(base, budget, args.seeds, root, search_steps, args.smoke, w, args.fixed_l1)
                     for w in weights]  # fmt: skip
    command = " ".join(["python runs/bench_search.py", *(sys.argv[1:] if argv is None else argv)])
    text = (f"{table(teacher, rows)}\n\n{args.seeds} seed(s), {base.train.steps} distillation steps per student; "
            f"{hardware()}; {time.perf_counter() - start:.0f} s in all.\n\n`{command}`\n")  # fmt: skip
    atomic_write_text(root / "table.md", text)
    atomic_write_text(root / "results.json", json.dumps({"teacher": teacher, "rows": rows, "command": command,
                                                        "hardware": hardware()}, indent=2))  # fmt: skip
    if args.record:
        print(f"figures recorded in {record_rows(teacher, rows, base, search_steps, args, argv)}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
