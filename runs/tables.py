"""The README's and docs' tables, generated from the files under results/ (never typed by hand).

    python runs/tables.py            # rewrite every marked block in README.md and docs/*.md
    python runs/tables.py --check    # exit 1 and name each stale block (tests/test_tables.py runs this)

A block is two marker lines in a Markdown file, ``<!-- table: NAME -->`` and ``<!-- /table -->``; everything between
them is replaced by what ``RENDERERS[NAME]`` makes of its results file: a table and one provenance line (command,
commit, date, machine, threads). A block whose file is missing says which command writes it. Figures are percentages
of the real test set; "final" is the student after its last step, "best" the best of its evaluations (selected on
the test set, as DAFL reports); mean ± sample standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Callable

from datafree.bench.common import class_list, pct, provenance_line, search_steps_label, search_weight_label
from datafree.bench.zoo_tables import strict, weights_only, zoo, zoo_targets

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
MARKER = re.compile(r"(<!-- table: ([a-z0-9_]+) -->\n)(.*?)(<!-- /table -->)", re.S)


def missing(name: str, command: str) -> str:
    return f"_No results/{name}.json yet: `{command}` writes it._"


def _class_names(data: dict, k: int) -> list[str]:
    """The file's class names, else its registered dataset's (``datafree.data.dataset_info``), else the indices."""
    names = list(data.get("class_names") or [])
    if not names and data.get("dataset"):
        from datafree.data import dataset_info

        try:
            names = list(dataset_info(data["dataset"]).class_names)
        except (KeyError, ValueError):
            names = []
    return names if len(names) == k else [str(c) for c in range(k)]


def demo(data: dict) -> str:
    """The demo's recipe over its seeds: teacher, student final / best, the worst class, steps and time."""
    runs = data["runs"]
    teacher = runs[0]["class_acc"]["teacher"]
    names = _class_names(data, len(teacher))
    per_class = [statistics.fmean(r["class_acc"]["student"][k] for r in runs) for k in range(len(teacher))]
    worst = min(range(len(teacher)), key=lambda k: per_class[k] / max(teacher[k], 1e-9))
    below = [names[k] for k in range(len(teacher)) if per_class[k] < teacher[k] / 2] or ["none"]
    rows = [
        "| | figure |",
        "|---|---:|",
        f"| teacher {data['teacher_arch']} ({runs[0]['teacher_params']:,} parameters), real test set | "
        f"{100 * runs[0]['teacher_acc']:.2f}% |",
        f"| data-free student {data['student_arch']} ({runs[0]['student_params']:,} parameters), final | "
        f"**{pct([r['student_acc_final'] for r in runs])}%** |",
        f"| ... best of its evaluations | {pct([r['student_acc_best'] for r in runs])}% |",
        f"| the class furthest from the teacher's (student / teacher) | {names[worst]}: {100 * per_class[worst]:.1f}% "
        f"/ {100 * teacher[worst]:.1f}% |",
        f"| classes under half the teacher's accuracy | {', '.join(below)} |",
        f"| steps per seed | {'/'.join(str(r['steps']) for r in runs)} |",
        f"| distillation seconds per seed | {'/'.join(str(round(r['wall_time_s'])) for r in runs)} |",
        f"| seeds | {len(runs)} |",
    ]
    return "\n".join(rows) + "\n\n" + provenance_line(data)


def demo_runs(data: dict) -> str:
    """The demo's seeds one by one, with each class."""
    runs = data["runs"]
    teacher = runs[0]["class_acc"]["teacher"]
    names = _class_names(data, len(teacher))
    head = "| seed | final | best (step) | steps | seconds | " + " | ".join(names) + " |"
    rule = "|---:|---:|---:|---:|---:|" + "---:|" * len(names)
    rows = [head, rule, "| teacher | | | | | " + " | ".join(f"{100 * a:.1f}" for a in teacher) + " |"]
    for r in runs:
        rows.append(f"| {r['seed']} | {100 * r['student_acc_final']:.2f} | {100 * r['student_acc_best']:.2f} "
                    f"({r['best_step']}) | {r['steps']} | {r['wall_time_s']:.0f} | "
                    + " | ".join(f"{100 * a:.1f}" for a in r["class_acc"]["student"]) + " |")  # fmt: skip
    return "\n".join(rows) + "\n\n" + provenance_line(data)


def check_recipes(data: dict) -> str:
    """The regression guard's references: each short fixed-step pair over its seeds, and the tolerance it allows."""
    rows = ["| pair | teacher | steps | student final per seed | final | best | fails below |",
            "|---|---:|---:|---|---:|---:|---:|"]
    for p in data["pairs"]:
        finals = [r["final"] for r in p["runs"]]
        rows.append(f"| {p['pair']} | {100 * p['teacher_acc']:.2f} | {p['steps']} | "
                    f"{' / '.join(f'{100 * f:.2f}' for f in finals)} | {pct(finals)} | "
                    f"{pct([r['best'] for r in p['runs']])} | {100 * p['floor']:.2f} |")
    return "\n".join(rows) + "\n\n" + provenance_line(data)


def image_size(data: dict) -> str:
    """One default-preset step per image size at 1000 classes: parameters, peak memory, seconds."""
    rows = ["| px | generator (parameters) | teacher | student | peak memory | seconds per step | images per step |",
            "|---:|---|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        rows.append(f"| {r['image_size']} | {r['generator']} ({r['generator_params'] / 1e6:.2f}M) | "
                    f"{r['teacher_params'] / 1e6:.1f}M | {r['student_params'] / 1e6:.1f}M | "
                    f"{r['peak_mb'] / 1024:.2f} GiB | {r['step_s']:.1f} | {r['images_per_step']} |")  # fmt: skip
    first = data["rows"][0]
    note = (f"batch {first['batch']}, {first['classes']} classes, teacher {data['teacher']}, student {data['student']} "
            "(random weights), preset default")
    return "\n".join(rows) + f"\n\n{note}\n\n" + provenance_line(data)


def verdict(better: list[float], worse: list[float]) -> str:
    """Whether row A gains over row B, by a rule stated beside every table that uses it: "gain" when every seed of A
    is above every seed of B, "loss" when every seed is below, else "no gain here" (the seeds overlap)."""
    if min(better) > max(worse):
        return "gain"
    if max(better) < min(worse):
        return "loss"
    return "no gain here"


def comparisons(rows: dict[str, dict], pairs: list[tuple[str, str, str]]) -> str:
    """One line per (A, B, what A adds over B) whose rows are both in the table: the difference of mean finals and
    the verdict."""
    lines = []
    for a, b, what in pairs:
        if a in rows and b in rows:
            fa, fb = rows[a]["final_per_seed"], rows[b]["final_per_seed"]
            diff = 100 * (statistics.fmean(fa) - statistics.fmean(fb))
            lines.append(f"- {what} (`{a}` over `{b}`): {diff:+.2f} points, {verdict(fa, fb)}")
    rule = ("A gain needs every seed of the first row above every seed of the second; a loss, every seed below; "
            "otherwise no gain here.")
    return ("\n".join(lines) + "\n\n" + rule) if lines else ""


def _finish(lines: list[str], claims: str, data: dict) -> str:
    """A method table: its lines, the claims under it (if any), its provenance."""
    return "\n".join(lines) + ("\n\n" + claims if claims else "") + "\n\n" + provenance_line(data)


def _setting(data: dict) -> str:
    return f"recipe `{data['recipe']}`, preset `{data.get('preset', '?')}`"


def _stage_steps(steps: int | list[int]) -> str:
    """A run's steps; sequential FEED's, one count per stage: "4 x 90" when the stages ran alike."""
    if not isinstance(steps, list):
        return str(steps)
    return f"{len(steps)} x {steps[0]}" if len(set(steps)) == 1 else "+".join(map(str, steps))


def teacher_methods(data: dict) -> str:
    """Teacher-side methods (best single teacher, ensemble KD, parallel / sequential FEED, RCO) into one student at
    equal wall time, and what each adds over its ablation."""
    teachers = ", ".join(f"{t['arch']}@{t['seed']} {100 * t['teacher_acc']:.2f}" for t in data["teachers"])
    budget = data["budget"]
    limit = (f"{budget['single_steps']} steps for `single`, the others the steps that take as long (timed back to back)"
             if "single_steps" in budget else f"{budget['minutes']} minutes per run")
    lines = [f"Teachers (arch@seed, test accuracy): {teachers}. Student `{data['student']}`, transfer set: "
             f"{data['transfer']}; {_setting(data)}; {limit}.", "",
             "| method | teacher | student's losses | steps per seed | final | best | s per seed |",
             "|---|---|---|---|---:|---:|---|"]  # fmt: skip
    for r in data["rows"]:
        lines.append(f"| {r['method']} | {r['teacher']} ({r['teacher_kind']}) | {' + '.join(r['distill'])} | "
                     f"{'/'.join(map(_stage_steps, r['steps_per_seed']))} | {pct(r['final_per_seed'])} | "
                     f"{pct(r['best_per_seed'])} | {'/'.join(f'{w:.0f}' for w in r['wall_s'])} |")  # fmt: skip
    rows = {r["method"]: r for r in data["rows"]}
    claims = comparisons(rows, [("feed", "ensemble_kd", "FEED's feature transforms"),
                                ("ensemble_kd", "single", "the ensemble's averaged logits"),
                                ("feed", "single", "parallel FEED as a whole"),
                                ("sfeed", "single", "sequential FEED"), ("rco", "single", "RCO's route")])  # fmt: skip
    return _finish(lines, claims, data)


def quantized(data: dict) -> str:
    """Low-bit students at equal steps, each exported and run with onnxruntime, and what each method adds."""
    t = data["teacher"]
    lines = [f"Teacher {t['arch']}@{t['seed']} {100 * t['teacher_acc']:.2f}%, student `{data['student']}`, "
             f"{data['steps']} steps per run; {_setting(data)}; onnxruntime with {data['onnx_threads']} thread(s).", "",
             "| row | weights / activations | teacher | student's losses | transfer | final | best | shipped file | "
             "bytes | ms/image b1 | ms/image b64 | ONNX = PyTorch (max abs logit diff) |",
             "|---|---|---|---|---|---:|---:|---|---:|---:|---:|---|"]  # fmt: skip
    for r in data["rows"]:
        q = r["quantize"] or {}
        bits = f"{q.get('bits', 'float')}" + (f" / {q['act_bits']}-bit" if q.get("act_bits") else " / float")
        kind = r["teacher_kind"] + (f" {r['teacher_params']}" if r.get("teacher_params") else "")
        lines.append(f"| {r['row']} | {bits} | {kind} | {' + '.join(r['distill'])} | {r['transfer']} | "
                     f"{pct(r['final_per_seed'])} | {pct(r['best_per_seed'])} | {r['onnx_file']} | "
                     f"{r['onnx_bytes']:,} | {r['latency_ms_b1']:.4f} | {r['latency_ms_b64']:.4f} | "
                     f"{'yes' if r['onnx_matches'] else 'NO'} ({r['max_abs_logit_diff']:.1e}) |")  # fmt: skip
    rows = {r["row"]: r for r in data["rows"]}
    claims = comparisons(rows, [("ternary_decay", "ternary", "the decaying KD coefficient"),
                                ("speq_add", "w4a4", "SPEQ's term beside KD"),
                                ("speq_replace", "w4a4", "SPEQ's term instead of KD"),
                                ("speq_add", "speq_add_anybits", "the paper's draw (target width and up) over any width")])  # fmt: skip
    return _finish(lines, claims, data)


def search(data: dict) -> str:
    """Searched students against hand-designed ones at a FLOPs budget, or the search at several L1 weights."""
    t = data["teacher"]
    lines = [f"Teacher {t['arch']}@{t['seed']} {100 * t['teacher_acc']:.2f}%; every student distilled "
             f"{data['steps']} steps; searches of at most {data['search_steps']} steps; {_setting(data)}. Budgets are "
             f"fractions of LeNet-5-half's {data['flops_reference']:,} FLOPs; a star marks a search that stopped at its "
             "step limit above the budget.", "",
             "| budget | student | L1 weight | search steps | FLOPs | params | final | best | search s | distill s |",
             "|---|---|---|---|---:|---:|---:|---:|---|---|"]  # fmt: skip
    for r in data["rows"]:
        weight, steps = search_weight_label(r), search_steps_label(r)
        final = pct(r["final_per_seed"]) if r["final_per_seed"] else "diverged"
        best = pct(r["best_per_seed"]) if r["best_per_seed"] else "-"
        lines.append(f"| {r['budget']} | {r['kind']}: {r['student']} | {weight} | {steps} | {r['flops']:,} | "
                     f"{r['params']:,} | {final} | {best} | {'/'.join(f'{x:.0f}' for x in r['search_s'])} | "
                     f"{'/'.join(f'{x:.0f}' for x in r['distill_s'])} |")  # fmt: skip
    # the search's own default row (one searched row per budget) against the hand-designed one at that budget
    rows = {f"{r['kind']} at {r['budget']}": r for r in data["rows"] if r["final_per_seed"]}
    budgets = dict.fromkeys(r["budget"] for r in data["rows"])
    pairs = [(f"searched at {b}", f"hand at {b}", f"the searched student at budget {b}") for b in budgets]
    return _finish(lines, comparisons(rows, pairs), data)


# block name -> (results file, renderer, the command that writes the file)
RENDERERS: dict[str, tuple[str, Callable[[dict], str], str]] = {
    "demo": ("demo", demo, "python runs/benchmark.py fmnist --seeds 3 --record demo"),
    "demo_runs": ("demo", demo_runs, "python runs/benchmark.py fmnist --seeds 3 --record demo"),
    "check_recipes": ("check_recipes", check_recipes, "python runs/check_recipes.py --seeds 4 --record"),
    "zoo": ("zoo", zoo, "python runs/bench_teachers.py --seeds 3 --minutes 10 --record zoo"),
    "image_size": ("image_size", image_size, "python runs/bench_image_size.py --record image_size"),
    "zoo_held_out": ("zoo_held_out", zoo_targets, "python runs/bench_teachers.py --part held-out --seeds 3 --minutes 10 "
                     "--record zoo_held_out"),
    "zoo_harder": ("zoo_harder", zoo_targets, "python runs/bench_teachers.py --pairs resnet20:resnet8_narrow@fmnist-"
                   "pairs100,mobilenet_small:mobilenet_tiny@fmnist-pairs100 --seeds 3 --minutes 10 --record zoo_harder"),
    "zoo_harder_64": ("zoo_harder_64", zoo_targets, "python runs/bench_teachers.py --pairs resnet20_s2:resnet8_narrow_s2@"
                      "fmnist-rgb64,mobilenet_small_s2:mobilenet_tiny_s2@fmnist-rgb64 --seeds 3 --minutes 10 "
                      "--teacher-epochs 3 --record zoo_harder_64"),
    "zoo_weights_only": ("zoo_weights_only", weights_only, "python runs/bench_teachers.py --seeds 3 --minutes 10 "
                         "--teacher.stats none --record zoo_weights_only"),
    "zoo_strict": ("zoo_strict", strict, "python runs/bench_teachers.py --part all --preset strict --seeds 3 --minutes 10 "
                   "--record zoo_strict"),
    "teacher_methods": ("teacher_methods", teacher_methods, "python runs/bench_teacher_methods.py --seeds 3 --steps 250 "
                        "--teacher-epochs 5 --record teacher_methods"),
    "teacher_methods_real": ("teacher_methods_real", teacher_methods, "python runs/bench_teacher_methods.py --seeds 3 "
                             "--steps 250 --teacher-epochs 5 --transfer real --record teacher_methods_real"),
    "teacher_methods_zoo": ("teacher_methods_zoo", teacher_methods, "python runs/bench_teacher_methods.py --teachers "
                            "lenet5@0,vgg_bn@0,resnet20@0,mobilenet_small@0 --student vgg_bn_small --methods "
                            "single,ensemble_kd,feed --seeds 3 --steps 250 --teacher-epochs 5 --record teacher_methods_zoo"),
    "quantized": ("quantized", quantized, "python runs/bench_quantized.py --seeds 3 --steps 250 --teacher-epochs 5 "
                  "--record quantized"),
    "search": ("search", search, "python runs/bench_search.py --seeds 3 --steps 250 --search-steps 300 "
               "--teacher-epochs 5 --record search"),
    "search_l1": ("search_l1", search, "python runs/bench_search.py --seeds 3 --steps 250 --budgets 0.5 --kinds "
                  "searched --l1 0.02,0.1,0.5 --fixed-l1 --search-steps 1500 --teacher-epochs 5 --record search_l1"),
}


def render(name: str, results: Path = RESULTS) -> str:
    """The text of block ``name`` from ``results/``."""
    if name not in RENDERERS:
        raise KeyError(f"no table named {name!r}; known: {', '.join(sorted(RENDERERS))} (runs/tables.py)")
    stem, renderer, command = RENDERERS[name]
    path = results / f"{stem}.json"
    if not path.exists():
        return missing(stem, command)
    return renderer({**json.loads(path.read_text()), "_results_dir": str(results)})  # a renderer may read others


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def regenerate(text: str, results: Path = RESULTS) -> str:
    """``text`` with every marked block filled from ``results``."""
    return MARKER.sub(lambda m: m.group(1) + render(m.group(2), results) + "\n" + m.group(4), text)


def stale(root: Path = ROOT, results: Path = RESULTS) -> list[str]:
    """The blocks whose committed text differs from what ``results`` gives, as ``file: block``."""
    out = []
    for doc in documents(root):
        if not doc.exists():
            continue
        text = doc.read_text()
        for m in MARKER.finditer(text):
            if m.group(3) != render(m.group(2), results) + "\n":
                out.append(f"{doc.relative_to(root)}: {m.group(2)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    if args.check:
        old = stale()
        for line in old:
            print(f"stale: {line} (run python runs/tables.py)")
        return 1 if old else 0
    for doc in documents():
        if doc.exists():
            text = doc.read_text()
            new = regenerate(text)
            if new != text:
                doc.write_text(new)
                print(f"updated {doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
