"""Quantized students, data-free: what do low-bit weights and activations cost, and do the seeds' methods help?

    python runs/bench_quantized.py [--recipe zoo] [--teacher lenet5@0] [--student lenet5_half]
        [--rows float,ternary,ternary_decay,w4,w4a4,speq_add,speq_add_anybits,speq_replace,ternary_real] [--seeds 3]
        [--steps 400] [--teacher-epochs N] [--threads 1] [--output-root outputs/bench_quantized] [--smoke]
        [--record NAME]

Every row is the recipe (the default preset: the generator side is identical) with one student side (every KD term at
the recipe's temperature, 4 in the default preset), the same
number of steps (``--steps``: equal steps, so the comparison does not move with the machine's load), 3 seeds:

- ``float``: float32 student, KD;
- ``ternary``: ternary weights (TWN, first and last layers float), constant KD;
- ``ternary_decay``: the same with the KD coefficient decaying 1 -> 0.2 while the hard term (CE on the
  teacher's argmax) grows 0 -> 0.8. The QKD paper (Shin et al.) finds that reducing the coefficient during training
  helps; its abstract gives no end values, and 0.2 / 0.8 (linear) are our choice, as in runs/cifar10_ternary.toml;
- ``w4``: 4-bit weights, KD; ``w4a4``: 4-bit weights and 4-bit input activations, KD (SPEQ's baseline);
- ``speq_add``: ``w4a4`` + SPEQ's self-teacher term (``[teacher] kind = "speq"``, ``[[distill]] speq``) beside KD;
- ``speq_add_anybits``: ``speq_add`` with the self-teacher drawing any width (2..8 bits or float) for every layer,
  even under the student's own 4 bits (``params.choices``): how SPEQ ran here before it followed the paper's draw;
- ``speq_replace``: ``w4a4`` with SPEQ's term instead of KD's soft labels (the hard term kept: a data-free
  student needs the real teacher somewhere);
- ``ternary_real``: ``ternary`` on the real training images (``train.transfer = "real"``), the reference.

Each student is then exported by ``datafree.ship.deploy`` (ONNX, int8-stored weights when quantized) and checked with
onnxruntime on the real test set: the table gives the file size and latency per image (batch 1 and 64,
``--threads`` intra-op threads) of the file a user would ship. Each row is written to ``<root>/<row>/row.json``
with the invocation that made it, and table.md / results.json list every row found there, so rows may run as separate
invocations. ``--record NAME`` also writes that table's per-seed figures with their provenance to results/NAME.json
(datafree.io.results): this invocation's, and under ``earlier`` those of the invocations that made the other rows.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from datafree.bench.args import bench_parser, parse, recipe_label
from datafree.config import Config, TermConfig, WrapperConfig

ROOT = Path(__file__).resolve().parents[1]
# recipe keys each run sets from this script's own options (an override of one is refused, naming the option)
OWNED = {"train.steps": "--steps", "train.seed": "--seeds", "train.output_dir": "--output-root",
         "teacher.arch": "--teacher", "teacher.checkpoint": "--teacher", "student.arch": "--student",
         "student.wrap": "--rows", "distill": "--rows"}


TERNARY = {"bits": "ternary"}
W4, W4A4 = {"bits": 4}, {"bits": 4, "act_bits": 4}
DECAY = [TermConfig("kd", 1.0, "linear", 0.2), TermConfig("hard", 0.0, "linear", 0.8)]
# SPEQ's self-teacher before it followed the paper: any width 2..8 bits or float for every layer, even under the
# student's own target (a row of its own, so the paper's draw is measured against it)
ANY_BITS = {"choices": [2, 3, 4, 5, 6, 7, 8, 0]}
TEACHER_PARAMS = {"speq_add_anybits": ANY_BITS}
ROWS = {  # name: (quantize params or None, distill terms or None = the recipe's, teacher kind, transfer)
    "float": (None, None, "single", "synthetic"),
    "ternary": (TERNARY, None, "single", "synthetic"),
    "ternary_decay": (TERNARY, DECAY, "single", "synthetic"),
    "w4": (W4, None, "single", "synthetic"),
    "w4a4": (W4A4, None, "single", "synthetic"),
    "speq_add": (W4A4, [TermConfig("kd"), TermConfig("speq")], "speq", "synthetic"),
    "speq_replace": (W4A4, [TermConfig("hard"), TermConfig("speq")], "speq", "synthetic"),
    "speq_add_anybits": (W4A4, [TermConfig("kd"), TermConfig("speq")], "speq", "synthetic"),
    "ternary_real": (TERNARY, None, "single", "real"),
}


def row_config(base: Config, row: str) -> Config:
    quantize, distill, kind, transfer = ROWS[row]
    c = copy.deepcopy(base)
    c.name, c.teacher.kind, c.train.transfer = row, kind, transfer
    if row in TEACHER_PARAMS:
        c.teacher.params = dict(TEACHER_PARAMS[row])
    c.student.wrap = [WrapperConfig("quantize", dict(quantize))] if quantize else []
    if distill is not None:  # every row's KD at the recipe's temperature: only coefficients and terms differ by row
        kd_params = next((t.params for t in base.distill if t.name == "kd"), {})
        c.distill = [replace(t, params={**kd_params, **t.params}) if t.name == "kd" else copy.deepcopy(t)
                     for t in distill]  # fmt: skip
    return c


def run_row(config: Config, row: str, seeds: int, root: Path, threads: int) -> dict:
    from datafree.build import reset_accelerate
    from datafree.ship.deploy import deploy_run
    from datafree.pipeline import distill_from_config
    from datafree.report import spread

    runs = []
    for seed in range(seeds):
        c = copy.deepcopy(config)
        c.train.seed, c.train.output_dir, c.train.overwrite = seed, str(root / row / f"seed_{seed}"), True
        print(f"== {row}, seed {seed}", flush=True)
        start = time.perf_counter()
        results = distill_from_config(c)
        reset_accelerate()
        results["total_s"] = round(time.perf_counter() - start, 1)
        shipped = deploy_run(c.train.output_dir, threads=threads)["files"][-1]  # int8 when quantized, else float
        runs.append({**results, "onnx": shipped})
    onnx = [r["onnx"] for r in runs]
    return {"row": row, "final": spread([r["student_acc_final"] for r in runs]),
            "best": spread([r["student_acc_best"] for r in runs]), "wall_s": [r["total_s"] for r in runs],
            "onnx_file": onnx[0]["file"], "onnx_bytes": onnx[0]["bytes"],
            "onnx_matches": all(o["accuracy_onnxruntime"] == o["accuracy_pytorch"] for o in onnx),
            "max_abs_logit_diff": max(o["max_abs_logit_diff"] for o in onnx),
            "latency_ms_b1": statistics.median(o["latency_ms_per_image_batch1"] for o in onnx),
            "latency_ms_b64": statistics.median(o["latency_ms_per_image_batch64"] for o in onnx), "runs": runs}  # fmt: skip


def table(teacher: dict, rows: list[dict]) -> str:
    pct = lambda s: f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"  # noqa: E731
    lines = [f"Teacher {teacher['arch']} (seed {teacher['seed']}): {100 * teacher['teacher_acc']:.2f}% on the real test set.", "",
             "| student | final | best | shipped file | bytes | ms/image b1 | ms/image b64 | ONNX = PyTorch accuracy (max abs logit diff) |",
             "|---|---:|---:|---|---:|---:|---:|---|"]  # fmt: skip
    lines += [f"| {r['row']} | {pct(r['final'])} | {pct(r['best'])} | {r['onnx_file']} | {r['onnx_bytes']:,} | "
              f"{r['latency_ms_b1']:.4f} | {r['latency_ms_b64']:.4f} | {'yes' if r['onnx_matches'] else 'NO'} "
              f"({r['max_abs_logit_diff']:.1e}) |" for r in rows]  # fmt: skip
    return "\n".join(lines)


def record_rows(teacher: dict, rows: list[dict], base: Config, args: argparse.Namespace, argv: list[str] | None) -> Path:
    """The table's per-seed figures, each row with the student side that defines it, with their provenance."""
    from datafree.io.results import record, results_path

    keep = ("onnx_file", "onnx_bytes", "onnx_matches", "max_abs_logit_diff", "latency_ms_b1", "latency_ms_b64")
    compact = []
    for r in rows:  # every row of the table: this invocation's and those an earlier one left under --output-root
        quantize, distill, kind, transfer = ROWS[r["row"]]
        compact.append({"row": r["row"], "quantize": quantize, "teacher_kind": kind, "transfer": transfer,
                        "teacher_params": TEACHER_PARAMS.get(r["row"], {}),
                        "distill": [t.name for t in (base.distill if distill is None else distill)],
                        "seeds": list(range(len(r["runs"]))),  # run_row: seeds 0..n-1, in order
                        "steps_per_seed": [run["steps"] for run in r["runs"]],
                        "final_per_seed": [run["student_acc_final"] for run in r["runs"]],
                        "best_per_seed": [run["student_acc_best"] for run in r["runs"]], "wall_s": r["wall_s"],
                        **{k: r[k] for k in keep}})  # fmt: skip
    # rows an earlier invocation left under --output-root: the provenance of each such invocation, once, so that the
    # table's line names every command that made a row, not only this one (datafree.bench.common.provenance_line)
    mine = set(args.rows.split(","))
    earlier: list[dict] = []
    for r in rows:
        if r["row"] not in mine and "made" in r and r["made"] not in earlier:
            earlier.append(r["made"])
    table = {"recipe": recipe_label(args.recipe, ROOT), "preset": base.preset, "student": args.student,
             "steps": base.train.steps, "seeds": list(range(args.seeds)),
             "onnx_threads": args.threads, "smoke": args.smoke,
             "teacher": {k: teacher[k] for k in ("arch", "seed", "teacher_acc")}, "rows": compact,
             **({"earlier": earlier} if earlier else {})}  # fmt: skip
    return record(results_path(args.record, ROOT), table, ROOT,
                  ["runs/bench_quantized.py", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    import torch

    from datafree.io.checkpoint import atomic_write_text
    from datafree.io.results import provenance
    from datafree.pipeline import hardware
    from datafree.bench.common import fixed_steps_recipe

    parser = bench_parser(__doc__, recipe="zoo", seeds=3, output_root="outputs/bench_quantized")
    parser.add_argument("--teacher", default="lenet5@0", help="arch@seed, trained once under --output-root/teachers")
    parser.add_argument("--student", default="lenet5_half")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--steps", type=int, default=400, help="steps of every run (equal steps, not wall time)")
    parser.add_argument("--teacher-epochs", type=int, default=0, help="teacher training epochs (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads for the latency")
    args = parse(parser, argv, owned=OWNED)
    rows = [r for r in args.rows.split(",") if r]
    if set(rows) - set(ROWS):
        parser.error(f"--rows takes {','.join(ROWS)}; got {sorted(set(rows) - set(ROWS))}")
    root = Path(args.output_root)
    base, teacher = fixed_steps_recipe(args.recipe, args.steps, args.teacher_epochs, args.smoke, args.teacher, root, args)
    base.student.arch = args.student
    made = provenance(ROOT, ["runs/bench_quantized.py", *(sys.argv[1:] if argv is None else argv)])
    for row in rows:  # one file per row: several invocations (e.g. on two cores) fill one table, each row says which
        measured = run_row(row_config(base, row), row, args.seeds, root, args.threads)
        atomic_write_text(root / row / "row.json", json.dumps({**measured, "made": made}, indent=2))
    results = [json.loads((root / r / "row.json").read_text()) for r in ROWS if (root / r / "row.json").exists()]
    command = made["command"]
    text = (f"{table(teacher, results)}\n\n{args.seeds} seed(s), {base.train.steps} steps per run; training on "
            f"{hardware()}; onnxruntime {args.threads} thread(s).\n\n`{command}`\n")  # fmt: skip
    atomic_write_text(root / "table.md", text)
    atomic_write_text(root / "results.json", json.dumps({"teacher": teacher, "rows": results, "command": command,
                                                        "hardware": hardware(), "torch_threads": torch.get_num_threads()}, indent=2))  # fmt: skip
    if args.record:
        print(f"figures recorded in {record_rows(teacher, results, base, args, argv)}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
