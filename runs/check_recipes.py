"""The recipe regression guard: short fixed-step runs of the demo recipe and of each zoo pair, on small teachers it
trains itself, compared with the references stored in results/check_recipes.json.

    python runs/check_recipes.py                      # seed 0 of every pair against the references (make check-recipes)
    python runs/check_recipes.py --seeds 4 --record   # measure the references anew and write results/check_recipes.json
    python runs/check_recipes.py --pairs demo --synthesis.moment 1.5   # try a change on one pair before it lands

Why: the demo lost 3.7 points over many commits while nothing ran it. Every change that can move accuracy (a synthesis
term, a loss, a preset, a generator, a batch piece, a recipe) runs under this check, and CI runs it after the tests.

What it runs: each pair's recipe (runs/fmnist.toml for the demo, runs/zoo.toml for the zoo) unchanged but for a short
budget: the teacher trained for one epoch on the first ``TEACHER_IMAGES`` training images (its feature statistics
recorded from them, as train_teacher.py does), then ``steps`` data-free steps, evaluated on the whole real test set.
Fixed step counts, never wall time: the figure depends on the code, the seed and the thread count, not on the
machine's load. Every process computes with one thread and ``--jobs`` pairs run side by side (one per core).

The verdict: a pair fails when its final accuracy (seed 0) falls below the reference's floor, the mean of the recorded
seeds minus ``max(SPREAD_TIMES x std, MIN_TOLERANCE)``; and the check fails when the pairs' figures fall short of their
references' means by more than ``max(TOGETHER_TIMES x s / sqrt(n), MIN_TOLERANCE)`` on average, s the pooled standard
deviation of the n pairs (a change that costs every pair a little is as real as one that costs one pair a lot). A
figure above the reference's mean plus its margin passes, with a note to record the references anew. On the machine
the references were recorded on, an unchanged code reproduces seed 0's figure exactly.

Where the floors are enforced: on a machine like the references' (the same CPU model name, ATen capability and
torch). Elsewhere the check trains its teachers with other rounding, and a one-epoch teacher trained elsewhere is
another teacher: under ATen AVX2 the ResNet-20 pair's seed 0 gave 61.52 against 66.55-67.70 over four seeds here,
a spread the distillation seeds do not measure. There the table is printed with a note and the exit status is 0;
``--enforce`` fails on it anyway, and ``--seeds 4 --record`` on that machine records references for it. The teacher labels the
student's batches in fp32 here on every machine (the recipes' ``runtime.label_precision = "auto"`` takes bf16 where the CPU
has it natively): the figure then depends on the code, not on whether the CPU has bf16. Across CPUs (AVX2 / AVX-512, with or without native bf16 for the
teacher's labels) the same seed differs by rounding, which the seeds' spread covers.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from datafree.config import Config, load_toml
from datafree.config.spellings import translate_batch_keys, translate_callback_keys
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args

REFERENCE = ROOT / "results" / "check_recipes.json"
TEACHER_IMAGES = 16000  # one epoch on about a quarter of Fashion-MNIST: a teacher in seconds, far from the full one's
SPREAD_TIMES = 3.0  # a pair's floor sits this many standard deviations (over the recorded seeds) under their mean...
MIN_TOLERANCE = 0.01  # ...or one point, whichever is wider: a few seeds can agree by chance
TOGETHER_TIMES = 2.0  # the pairs' mean shortfall may reach this many standard errors (pooled std / sqrt(n pairs))
# name -> (recipe, teacher, student, data-free steps); the steps put every pair at ~1-2 minutes on one core
# (listed longest first: with two jobs the workers end together)
PAIRS: dict[str, tuple[str, str, str, int]] = {
    "resnet": ("runs/zoo.toml", "resnet20", "resnet8_narrow", 80),
    "mobilenet": ("runs/zoo.toml", "mobilenet_small", "mobilenet_tiny", 80),
    "vgg": ("runs/zoo.toml", "vgg_bn", "vgg_bn_small", 120),
    "demo": ("runs/fmnist.toml", "lenet5", "lenet5_half", 300),
}


def short_config(pair: str, root: Path, overrides: argparse.Namespace | None, smoke: bool = False) -> Config:
    """The pair's recipe with only the networks, the budget and where things are written changed (``smoke``: on
    generated stand-in images, 2 steps, to prove the chain in seconds; its figures mean nothing)."""
    recipe, teacher, student, steps = PAIRS[pair]
    c = load_toml(ROOT / recipe)
    if overrides is not None:
        c = apply_overrides(c, overrides)
    if smoke:
        steps = 2
        c.data.name, c.data.like, c.data.fake_size, c.data.eval_batch_size = "fake", c.data.name, 64, 64
        c.train.batch_size, c.train.student_steps = 8, 2
        c.callbacks = translate_callback_keys(c.callbacks, {("train", "precise_bn"): 2})
        c.batches = translate_batch_keys(c.batches, {"fresh_batch_size": 0})
        c.generator.width, c.runtime.channels_last, c.teacher_training.batch_size = 8, False, 16
    c.name, c.teacher.arch, c.student.arch = f"check-{pair}", teacher, student
    c.teacher.checkpoint = str(root / "teachers" / teacher / "teacher.safetensors")
    c.teacher_training.epochs, c.teacher_training.images, c.teacher_training.route_every = 1, TEACHER_IMAGES, 1
    t = c.train
    t.steps, t.eval_every, t.sample_every, t.checkpoint_every = steps, steps // 2, steps, steps
    t.max_minutes, t.trackers, t.overwrite = 0.0, [], True
    c.runtime.label_precision = "fp32"  # the same labels on every CPU, with or without native bf16
    return c


def run_pair(pair: str, seeds: list[int], root: Path, overrides: argparse.Namespace | None, smoke: bool = False) -> dict:
    """Teacher (trained unless present), then one short run per seed; the figures (in this process, one thread)."""
    import torch

    from datafree.build import reset_accelerate
    from datafree.pipeline import distill_from_config
    from datafree.supervised import recorded_teacher_accuracy, train_teacher

    torch.set_num_threads(1)
    config = short_config(pair, root, overrides, smoke)
    checkpoint = Path(config.teacher_checkpoint)
    if not checkpoint.exists():
        train_teacher(config)
        reset_accelerate()
    teacher_acc = recorded_teacher_accuracy(checkpoint)
    runs = []
    for seed in seeds:
        c = copy.deepcopy(config)
        c.train.seed, c.train.output_dir = seed, str(root / pair / f"seed_{seed}")
        start = time.perf_counter()
        results = distill_from_config(c)
        reset_accelerate()
        runs.append({"seed": seed, "final": results["student_acc_final"], "best": results["student_acc_best"],
                     "steps": results["steps"], "wall_s": round(time.perf_counter() - start, 1)})  # fmt: skip
    return {"pair": pair, "teacher": config.teacher.arch, "student": config.student.arch, "steps": config.train.steps,
            "teacher_acc": teacher_acc, "runs": runs}  # fmt: skip


def run_all(pairs: list[str], seeds: list[int], root: Path, jobs: int, passthrough: list[str],
            smoke: bool = False) -> list[dict]:  # fmt: skip
    """Each pair in its own process with one thread, ``jobs`` at a time; their figures in ``pairs``' order."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    waiting, running, done = list(pairs), {}, {}
    while waiting or running:
        while waiting and len(running) < jobs:
            pair = waiting.pop(0)
            log = open(root / f"{pair}.log", "w")
            cmd = [sys.executable, __file__, "--worker", pair, "--seed-list", ",".join(map(str, seeds)),
                   "--output-root", str(root), *(["--smoke"] if smoke else []), *passthrough]  # fmt: skip
            running[pair] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log)
            print(f"== {pair}: started (log {root / f'{pair}.log'})", flush=True)
        time.sleep(1)
        for pair, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[pair]
            if proc.returncode != 0:
                tail = (root / f"{pair}.log").read_text()[-2000:]
                raise SystemExit(f"check-recipes: pair {pair!r} failed (exit {proc.returncode}); its log ends:\n{tail}")
            done[pair] = json.loads((root / pair / "figures.json").read_text())
            finals = ", ".join(f"{100 * r['final']:.2f}" for r in done[pair]["runs"])
            print(f"== {pair}: done, final {finals}", flush=True)
    return [done[p] for p in pairs]


def with_floor(row: dict) -> dict:
    """A reference row: the recorded seeds and the floor under which a later figure fails."""
    finals = [r["final"] for r in row["runs"]]
    std = statistics.stdev(finals) if len(finals) > 1 else 0.0
    margin = max(SPREAD_TIMES * std, MIN_TOLERANCE)
    return {**row, "mean": statistics.fmean(finals), "std": std, "margin": margin,
            "floor": statistics.fmean(finals) - margin}


def verdict(figures: list[dict], reference: dict) -> tuple[list[str], bool]:
    """The comparison table (one line per pair) and whether every pair held."""
    refs = {r["pair"]: r for r in reference["pairs"]}
    lines = ["| pair | reference final (mean ± std, seeds) | fails below | this run (seed 0) | verdict |",
             "|---|---:|---:|---:|---|"]
    ok = True
    for row in figures:
        ref = refs.get(row["pair"])
        figure = row["runs"][0]["final"]
        if ref is None or ref["steps"] != row["steps"]:
            ok = False
            lines.append(f"| {row['pair']} | no reference for {row['steps']} steps | | {100 * figure:.2f} | "
                         "FAIL: record the references (--seeds 4 --record) |")
            continue
        held = figure >= ref["floor"]
        ok &= held
        note = "ok" if held else "FAIL: below the floor"
        if held and figure > ref["mean"] + ref["margin"]:
            note = "ok, above the reference: record the references anew once this lands"
        lines.append(f"| {row['pair']} | {100 * ref['mean']:.2f} ± {100 * ref['std']:.2f} ({len(ref['runs'])}) | "
                     f"{100 * ref['floor']:.2f} | {100 * figure:.2f} | {note} |")
    held = [row for row in figures if row["pair"] in refs and refs[row["pair"]]["steps"] == row["steps"]]
    if len(held) > 1:
        shortfall = statistics.fmean(row["runs"][0]["final"] - refs[row["pair"]]["mean"] for row in held)
        pooled = statistics.fmean(refs[row["pair"]]["std"] ** 2 for row in held) ** 0.5
        margin = max(TOGETHER_TIMES * pooled / len(held) ** 0.5, MIN_TOLERANCE)
        together = shortfall >= -margin
        ok &= together
        lines.append(f"| all {len(held)} pairs: mean difference to the references | ± {100 * pooled:.2f} (pooled) | "
                     f"{-100 * margin:+.2f} | {100 * shortfall:+.2f} | {'ok' if together else 'FAIL: below the floor'} |")
    return lines, ok


def same_machine(reference: dict) -> tuple[bool, str]:
    """Whether this machine is the kind the references were recorded on (CPU model, ATen capability, torch)."""
    from datafree.io.results import machine

    here, there = machine(), reference["provenance"]["hardware"]
    keys = ("cpu", "cpu_capability", "torch")
    differ = [f"{k} {here[k]!r} (references: {there.get(k)!r})" for k in keys if here[k] != there.get(k)]
    return not differ, "; ".join(differ)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated, of {', '.join(PAIRS)}")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (the check: 1; references: 3)")
    parser.add_argument("--record", action="store_true", help=f"write the figures as the references ({REFERENCE})")
    parser.add_argument("--jobs", type=int, default=2, help="pairs run side by side, one thread each (default 2)")
    parser.add_argument("--output-root", default="outputs/check_recipes")
    parser.add_argument("--reference", default=str(REFERENCE), help="the references' file (default %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="2 steps on generated stand-in images: proves the "
                        "chain in seconds (compare only with references recorded with --smoke)")  # fmt: skip
    parser.add_argument("--enforce", action="store_true", help="fail on the floors even on a machine unlike the "
                        "references' (another CPU model, ATen capability or torch)")  # fmt: skip
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)  # one pair, in a child process
    parser.add_argument("--seed-list", default="0", help=argparse.SUPPRESS)
    add_override_arguments(parser)  # a change to try: --synthesis.moment 1.5, --train.batch_size 32, ...
    args = parse_args(parser, argv)
    root = Path(args.output_root)
    if args.worker:
        row = run_pair(args.worker, [int(s) for s in args.seed_list.split(",")], root, args, args.smoke)
        (root / args.worker).mkdir(parents=True, exist_ok=True)
        (root / args.worker / "figures.json").write_text(json.dumps(row))
        return 0
    pairs = [p for p in args.pairs.split(",") if p]
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown or not pairs:
        parser.error(f"--pairs: unknown {unknown}; choose from {', '.join(PAIRS)}")
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")
    argv_list = sys.argv[1:] if argv is None else list(argv)
    passthrough = overrides_only(argv_list)  # the child processes apply the same overrides
    if args.record and passthrough:
        parser.error("--record stores the recipes as they are: drop the overrides " + " ".join(passthrough))
    reference = Path(args.reference)
    if not args.record and not reference.exists():
        parser.error(f"no references at {reference}: record them with --seeds 4 --record")
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    figures = run_all(pairs, list(range(args.seeds)), root, args.jobs, passthrough, args.smoke)
    if args.record:
        from datafree.io.results import record

        rows = [with_floor(row) for row in figures]
        rule = (f"floor = mean - max({SPREAD_TIMES} x std, {100 * MIN_TOLERANCE:.0f} point) over the seeds; all pairs: "
                f"mean shortfall within max({TOGETHER_TIMES} x pooled std / sqrt(n), {100 * MIN_TOLERANCE:.0f} point); "
                f"teacher: 1 epoch on the first {TEACHER_IMAGES} training images")
        path = record(reference, {"pairs": rows, "rule": rule, "smoke": args.smoke}, ROOT,
                      ["runs/check_recipes.py", *argv_list], threads=1)  # fmt: skip
        print(f"references written to {path} ({time.perf_counter() - start:.0f} s); run python runs/tables.py")
        return 0
    from datafree.io.results import load

    saved = load(reference)
    lines, ok = verdict(figures, saved)
    print("\n".join(lines))
    alike, differ = same_machine(saved)
    if not ok and not alike and not args.enforce:
        print(f"\ncheck-recipes: below the references, NOT enforced: this machine is not the references' kind "
              f"({differ}), so its teachers differ. Record references here (--seeds 4 --record) or pass --enforce.")
        return 0
    print(f"\ncheck-recipes: {'passed' if ok else 'FAILED'} in {time.perf_counter() - start:.0f} s"
          + ("" if ok else f"; references: {reference}, logs: {root}"))
    return 0 if ok else 1


def overrides_only(argv: list[str]) -> list[str]:
    """The ``--section.key value`` overrides of ``argv`` (what a child process must apply too), in order."""
    own = {"--pairs", "--seeds", "--jobs", "--output-root", "--worker", "--seed-list", "--reference"}
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        key = arg.split("=", 1)[0]
        takes_value = "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--")
        if key in own:
            i += 2 if takes_value else 1
            continue
        if key in {"--record", "--smoke", "--enforce"}:
            i += 1
            continue
        out.extend(argv[i:i + 2] if takes_value else [arg])
        i += 2 if takes_value else 1
    return out


if __name__ == "__main__":
    sys.exit(main())
