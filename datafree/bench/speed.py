"""Images/sec of the real data-free step (``DataFreeTrainer.train_step``) per precision / layout / compile mode.

    datafree bench speed --recipe fmnist [--batch-sizes 64,128,256,512]
        [--modes fp32,cl,bf16,compile,bf16+cl,cl+compile,bf16+cl+compile] [--iters 0] [--warmup 1] [--repeats 3]
        [--threads 0] [--record NAME]
    datafree bench speed --quick    # about a minute: batch 16, fp32/cl/bf16, one round

(``python runs/bench_speed.py ...`` is the same program, run from a checkout.) It measures the recipe (default fmnist) with any ``--section.key value`` overrides (as train_dfl.py takes
them, e.g. ``--recipe zoo --teacher.arch resnet20 --student.arch resnet8_narrow --runtime.label_precision fp32``),
built by ``datafree.build`` around a random teacher.
A mode is "+"-joined flags: fp32 | bf16 | fp16, cl (runtime.channels_last), compile (runtime.compile); "fp32", the
eager fp32 NCHW loop, is the in-run baseline. Each mode runs in its own worker process (Accelerate's state is
process-global; a fresh process gives a clean peak memory; datafree/bench/speed_worker.py); this process drives them round-robin, one at a
time, and reports medians, so noise hits every mode alike. The split times the trainer's public pieces one by
one; the full step is ``train_step`` itself, so a change of the step needs no edit here. The last line is
``speedup_vs_eager_fp32: <ratio>``: best mode / eager fp32 at the recipe's batch. ``--record NAME`` also writes the
per-round timings, their medians and the ratios with their provenance to results/NAME.json (datafree.io.results).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

import datafree
from datafree.bench.args import bench_parser, given_overrides, load_recipe, overridden, parse, recipe_label
from datafree.bench.speed_worker import mode_settings

DEFAULT_MODES = "fp32,cl,bf16,compile,bf16+cl,cl+compile,bf16+cl+compile"
PIECES = ("generator", "teacher", "student_batches", "student")  # the split's columns, in this order
TARGET_S = 1.0  # --iters 0: iterations per timed measurement chosen so that one measurement lasts about this long
LEGEND = """img/s: images the step generates (trainer.images_per_step) per second. peak MB: CPU: peak RSS (VmHWM, reset
per measurement) above the worker's RSS after its imports; CUDA: max allocated. split, % of the pieces' sum, each
timed alone: gen = synthesize + objective + backward + opt_g step, minus teacher; teacher = teacher forward +
objective + backward to fixed images; s-batches = student_batches of every student update (fresh batches: G +
teacher forward); s-updates = student forward + losses + backward + opt_s step. pieces / step: sum / train_step."""


def describe_recipe(config) -> str:
    """What is measured, in the recipe's own numbers."""
    g, s, t, r = config.generator, config.student, config.train, config.runtime
    source = " + ".join(f"{p.name}({', '.join(f'{k}={v}' for k, v in p.params.items())})" for p in config.batches)
    source = f"[[batches]] {source}" if source else "the generator's batch"
    terms = ", ".join(f"{term.name} {term.weight:g}" for term in config.synthesis)
    return (f"generator {g.arch} width {g.width} (latent {g.latent_dim}), teacher {config.teacher.arch} (random init), "
            f"student {s.arch} ({s.optimizer}); {t.student_steps} student steps per generator step on {source}; "
            f"synthesis: {terms}; train.batch_size {t.batch_size}; labels {r.label_precision}"
            f"{' on the BatchNorm-folded teacher' if r.fold_batchnorm else ''}")  # fmt: skip


# ---- parent side ---------------------------------------------------------------------------------------
class Worker:
    """One mode's process, driven by JSON lines over its stdin/stdout."""

    def __init__(self, name: str, recipe: Path, log_dir: Path, threads: int):
        self.name, self.compile = name, mode_settings(name)["compile"]
        self.error: str | None = None  # set once the mode cannot go on
        self.samples: dict[tuple[int, str], list] = defaultdict(list)  # (batch, kind) -> measurements
        self.log_path = log_dir / f"{name.replace('+', '_')}.log"
        self.log = self.log_path.open("w")
        command = [sys.executable, "-m", "datafree.bench.speed_worker", name, str(recipe), str(threads)]
        here = str(Path(datafree.__file__).resolve().parents[1])  # the worker imports the same datafree as this process
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)  # fmt: skip

    def ask(self, cmd: str, **request) -> dict:
        if self.error:
            return {"error": self.error}
        with contextlib.suppress(BrokenPipeError):  # a dead worker: its stdout reads empty below
            self.proc.stdin.write(json.dumps({"cmd": cmd, **request}) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            tail = [l for l in self.log_path.read_text().splitlines() if l.strip()][-1:] or ["no output"]
            self.error = f"worker died ({tail[0][:120]})"
            return {"error": self.error}
        return json.loads(line)

    def close(self) -> None:
        try:
            self.proc.communicate(timeout=60)  # closes the worker's stdin: it ends its loop and exits
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its handle
            self.proc.wait()
        self.log.close()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine_line() -> str:
    """Machine, threads, whether oneDNN has bf16 kernels here, and the load the run starts under."""
    from datafree.pipeline import hardware

    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    load = os.getloadavg()[0]
    threads = torch.get_num_threads()
    note = " (cores already busy: compare with --threads 1)" if load >= (os.cpu_count() or 1) and threads > 1 else ""
    return (f"machine: {hardware()}; python {platform.python_version()}; ATen CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}; oneDNN bf16 {bf16}; load average at start {load:.2f}{note}")


def measure(workers: list[Worker], batches: list[int], args) -> dict:
    """Per batch: every mode's setup (warmup, compile), then ``repeats`` round-robin rounds of step + split."""
    info: dict = {"flops": {}, "images": {}, "device": None}
    for batch in batches:
        iters: dict[str, int] = {}
        for w in workers:
            print(f"bench: batch {batch}: warmup {w.name}", file=sys.stderr, flush=True)
            result = w.ask("setup", batch=batch, warmup=args.warmup)
            if "error" in result:
                w.samples[(batch, "error")].append(result["error"])
                if w.compile:  # a compile that failed once fails again at the next batch: skip the mode
                    w.error = result["error"]
                continue
            info["device"], info["images"][batch] = result["device"], result["images_per_step"]
            iters[w.name] = args.iters or max(1, min(50, round(TARGET_S / max(result["step_s"], 1e-6))))
            if w.name == "fp32":  # eager: its step's FLOPs are every eager mode's
                info["flops"][batch] = w.ask("flops").get("flops")
        for repeat in range(args.repeats):
            order = workers[repeat % len(workers):] + workers[: repeat % len(workers)]
            for w in (w for w in order if w.name in iters):
                print(f"bench: batch {batch}: round {repeat + 1} {w.name}", file=sys.stderr, flush=True)
                for kind, result in (("step", w.ask("steps", iters=iters[w.name])),
                                     ("split", w.ask("split", iters=max(1, iters[w.name] // 2)))):  # fmt: skip
                    w.samples[(batch, "error" if "error" in result else kind)].append(result.get("error") or result)
    return info


def report(workers: list[Worker], batches: list[int], ref_batch: int, info: dict, title: str) -> float:
    """Print the table; return the best mode's speedup over eager fp32 at the reference batch."""
    step_s = {(w.name, b): median([r["seconds"] for r in w.samples[(b, "step")]]) for w in workers for b in batches}
    print(f"\n## {title}")
    print("| batch | mode | img/s | x eager fp32 | ms/step | peak MB | gen / teacher / s-batches / s-updates % "
          "| pieces / step | GFLOP/s |\n|---:|---|---:|---:|---:|---:|---|---:|---:|")  # fmt: skip
    for batch in batches:
        base = step_s[("fp32", batch)]
        for w in workers:
            seconds, splits = step_s[(w.name, batch)], w.samples[(batch, "split")]
            if math.isnan(seconds):  # no measurement
                reason = (w.samples[(batch, "error")] or [w.error or "no measurement"])[0]
                print(f"| {batch} | {w.name} | failed: {reason} | | | | | | |")
                continue
            peak = max(r["peak_mb"] for r in w.samples[(batch, "step")])
            parts = {p: median([s[p] for s in splits]) for p in PIECES} if splits else {}
            total = sum(parts.values())
            shares = " / ".join(f"{100 * parts[p] / total:.0f}" for p in PIECES) if total else "n/a"
            cover = f"{total / seconds:.2f}" if total else "n/a"
            flops = info["flops"].get(batch)
            rate = f"{flops / seconds / 1e9:.1f}" if flops else "n/a"
            print(f"| {batch} | {w.name} | {info['images'][batch] / seconds:.0f} | {base / seconds:.2f} "
                  f"| {1000 * seconds:.1f} | {peak:.0f} | {shares} | {cover} | {rate} |")  # fmt: skip
    measured = {n: s for (n, b), s in step_s.items() if b == ref_batch and not math.isnan(s)}
    best = min(measured, key=measured.get, default="fp32")  # NaN figures below when fp32 (or every mode) failed
    best_s = step_s[(best, ref_batch)]
    speedup = step_s[("fp32", ref_batch)] / best_s
    images = info["images"].get(ref_batch, 0)
    print(f"\nbest at batch {ref_batch}: {best}, {images / best_s:.0f} img/s = {speedup:.2f}x eager fp32")
    return speedup


def finite(value: float | None) -> float | None:
    """JSON has no NaN: a figure that was not measured is null."""
    return None if value is None or math.isnan(value) else value


def record_table(workers: list[Worker], batches: list[int], ref_batch: int, info: dict, config, recipe: str,
                 args: argparse.Namespace, argv: list[str] | None, prog: str) -> Path:  # fmt: skip
    """What the table shows, per mode and batch: every round's seconds per step and images/s, their medians, the
    ratio to eager fp32 (medians), the peak memory and the split's medians; and the last line's best ratio."""
    from datafree.io.results import record, results_path

    medians = {(w.name, b): median([r["seconds"] for r in w.samples[(b, "step")]]) for w in workers for b in batches}
    rows = []
    for batch in batches:
        images = info["images"].get(batch)
        for w in workers:
            seconds = [r["seconds"] for r in w.samples[(batch, "step")]]
            splits = w.samples[(batch, "split")]
            row = {"batch": batch, "mode": w.name, "settings": mode_settings(w.name), "images_per_step": images,
                   "seconds_per_step": seconds, "images_per_s": [images / s for s in seconds] if images else [],
                   "median_seconds_per_step": finite(medians[(w.name, batch)])}  # fmt: skip
            if seconds:
                row.update({"median_images_per_s": images / medians[(w.name, batch)],
                            "x_eager_fp32": finite(medians[("fp32", batch)] / medians[(w.name, batch)]),
                            "peak_mb": max(r["peak_mb"] for r in w.samples[(batch, "step")]),
                            "split_s": {p: median([x[p] for x in splits]) for p in PIECES} if splits else None})  # fmt: skip
            errors = w.samples[(batch, "error")] or ([w.error] if w.error and not seconds else [])
            if errors:
                row["error"] = errors[0]
            rows.append(row)
    measured = {n: t for (n, b), t in medians.items() if b == ref_batch and not math.isnan(t)}
    best = min(measured, key=measured.get, default="fp32")  # as report() picks it
    repo = Path.cwd()  # results/NAME.json of the checkout it runs from
    table = {"recipe": config.name, "recipe_file": recipe_label(recipe, repo), "overrides": given_overrides(args), "seed": config.train.seed,
             "batches": batches, "reference_batch": ref_batch, "repeats": args.repeats, "iters": args.iters,
             "warmup": args.warmup, "threads": args.threads or torch.get_num_threads(), "device": info["device"],
             "step_flops": {str(b): f for b, f in info["flops"].items()}, "rows": rows, "best_mode": best,
             "speedup_vs_eager_fp32": finite(medians[("fp32", ref_batch)] / medians[(best, ref_batch)])}  # fmt: skip
    return record(results_path(args.record, repo), table, repo,
                  [prog.removeprefix("python "), *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None, prog: str = "python runs/bench_speed.py") -> int:
    """``prog``: how the printed and recorded command line names this program (``datafree bench speed`` from the CLI)."""
    parser = bench_parser(__doc__, recipe="fmnist", smoke=False)
    parser.add_argument("--batch-sizes", default="64,128,256,512", help="generator batch sizes to measure")
    parser.add_argument("--modes", default=DEFAULT_MODES, help="comma-separated; fp32 (the baseline) is always added")
    parser.add_argument("--iters", type=int, default=0, help=f"steps per measurement (0: about {TARGET_S:.0f} s each)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per mode and batch (compile happens here)")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin rounds; the table shows medians")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads per worker (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny run for tests: batch 16, fp32/cl/bf16, one round")
    args = parse(parser, argv, owned={"train.batch_size": "--batch-sizes", "runtime.mixed_precision": "--modes",
                                      "runtime.channels_last": "--modes", "runtime.compile": "--modes"})  # fmt: skip
    recipe = args.recipe
    if args.threads:
        torch.set_num_threads(args.threads)  # workers apply it before any work; the parent only prints it
    if args.quick:
        args.batch_sizes, args.modes, args.iters, args.warmup, args.repeats = "16", "fp32,cl,bf16", 1, 1, 1

    config = overridden(load_recipe(recipe), args)
    batches = sorted({int(b) for b in args.batch_sizes.split(",") if b})
    modes = list(dict.fromkeys(["fp32", *[m for m in args.modes.split(",") if m]]))
    for name in modes:
        mode_settings(name)  # a misspelt mode fails here, before any worker starts
    ref_batch = config.train.batch_size if config.train.batch_size in batches else batches[-1]

    print(f"# bench_speed: recipe {config.name} ({recipe})")
    print("command:", prog, *(sys.argv[1:] if argv is None else argv))
    print(machine_line())
    print(f"recipe: {describe_recipe(config)}; reference batch {ref_batch}")
    with tempfile.TemporaryDirectory(prefix="bench_speed_logs_") as logs:
        resolved = Path(logs) / "recipe.json"  # the recipe as overridden: every worker measures the same one
        resolved.write_text(json.dumps(config.to_dict()))
        workers = [Worker(name, resolved, Path(logs), args.threads) for name in modes]
        try:
            info = measure(workers, batches, args)
        finally:
            for w in workers:
                w.close()
    print(f"device: {info['device']}; load average at end {os.getloadavg()[0]:.2f}; {args.repeats} round(s), "
          f"iters per measurement {args.iters or f'auto (~{TARGET_S:.0f} s)'}, warmup {args.warmup} + compile untimed")
    print(LEGEND)
    flops = ", ".join(f"batch {b}: {f / 1e9:.2f} GFLOP" for b, f in info["flops"].items() if f) or "n/a"
    print(f"FLOPs of one train_step (FlopCounterMode, eager, fwd + bwd): {flops}")
    title = (f"train_step of recipe {config.name}: generator width {config.generator.width}, "
             f"{config.train.student_steps} student steps; medians of the rounds")  # fmt: skip
    speedup = report(workers, batches, ref_batch, info, title)
    if args.record:
        print(f"figures recorded in {record_table(workers, batches, ref_batch, info, config, recipe, args, argv, prog)}")
    print(f"speedup_vs_eager_fp32: {speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
