"""Images/sec of the real data-free step (``DataFreeTrainer.train_step``) per precision / layout / compile mode.

    PYTHONPATH=. .venv/bin/python runs/bench_speed.py --recipe fmnist [--batch-sizes 64,128,256,512]
        [--modes fp32,cl,bf16,compile,bf16+cl,cl+compile,bf16+cl+compile] [--iters 0] [--warmup 1] [--repeats 3]
        [--threads 0] [--record NAME]
    PYTHONPATH=. .venv/bin/python runs/bench_speed.py --quick    # about a minute: batch 16, fp32/cl/bf16, one round

It measures the recipe (default runs/fmnist.toml) with any ``--section.key value`` overrides (as train_dfl.py takes
them, e.g. ``--recipe zoo --teacher.arch resnet20 --student.arch resnet8_narrow --train.label_precision fp32``),
built by ``datafree.build`` around a random teacher.
A mode is "+"-joined flags: fp32 | bf16 | fp16, cl (train.channels_last), compile (train.compile); "fp32", the
eager fp32 NCHW loop, is the in-run baseline. Each mode runs in its own worker process (Accelerate's state is
process-global; a fresh process gives a clean peak memory); this process drives them round-robin, one at a
time, and reports medians, so noise hits every mode alike. The split times the trainer's public pieces one by
one; the full step is ``train_step`` itself, so a change of the step needs no edit here. The last line is
``speedup_vs_eager_fp32: <ratio>``: best mode / eager fp32 at the recipe's batch. ``--record NAME`` also writes the
per-round timings, their medians and the ratios with their provenance to results/NAME.json (datafree.results).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from datafree.overrides import add_override_arguments, apply_overrides, parse_args  # noqa: E402

DEFAULT_MODES = "fp32,cl,bf16,compile,bf16+cl,cl+compile,bf16+cl+compile"
PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
PIECES = ("generator", "teacher", "student_batches", "student")  # the split's columns, in this order
TARGET_S = 1.0  # --iters 0: iterations per timed measurement chosen so that one measurement lasts about this long
LEGEND = """img/s: images the step generates (trainer.images_per_step) per second. peak MB: CPU: peak RSS (VmHWM, reset
per measurement) above the worker's RSS after its imports; CUDA: max allocated. split, % of the pieces' sum, each
timed alone: gen = synthesize + objective + backward + opt_g step, minus teacher; teacher = teacher forward +
objective + backward to fixed images; s-batches = student_batches of every student update (fresh batches: G +
teacher forward); s-updates = student forward + losses + backward + opt_s step. pieces / step: sum / train_step."""


def mode_settings(name: str) -> dict[str, Any]:
    """A mode (one column of the comparison) as the [train] keys it sets."""
    flags = set(name.split("+"))
    if flags - {*PRECISIONS, "cl", "compile"} or len(flags & set(PRECISIONS)) > 1:
        raise SystemExit(f"mode {name!r}: '+'-join at most one of {sorted(PRECISIONS)} with cl and/or compile")
    precision = next((PRECISIONS[f] for f in flags if f in PRECISIONS), "no")
    return {"mixed_precision": precision, "channels_last": "cl" in flags, "compile": "compile" in flags}


def describe_recipe(config) -> str:
    """What is measured, in the recipe's own numbers."""
    g, s, t = config.generator, config.student, config.train
    source = " + ".join(f"{p.name}({', '.join(f'{k}={v}' for k, v in p.params.items())})" for p in config.batches)
    source = f"[[batches]] {source}" if source else "the generator's batch"
    terms = ", ".join(f"{term.name} {term.weight:g}" for term in config.synthesis)
    return (f"generator {g.arch} width {g.width} (latent {g.latent_dim}), teacher {config.teacher.arch} (random init), "
            f"student {s.arch} ({s.optimizer}); {t.student_steps} student steps per generator step on {source}; "
            f"synthesis: {terms}; train.batch_size {t.batch_size}; labels {t.label_precision}"
            f"{' on the BatchNorm-folded teacher' if t.fold_batchnorm else ''}")  # fmt: skip


def sync(device: torch.device) -> None:
    """CPU ops are synchronous; CUDA needs an explicit wait before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mb(key: str) -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process in MB; NaN off Linux."""
    with contextlib.suppress(OSError, StopIteration):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
        return int(line.split()[1]) / 1024
    return float("nan")


# ---- worker side: one mode, one process ----------------------------------------------------------------
def bench_trainer(config):
    """The recipe's trainer through datafree.build, around random nets; the feature-statistics terms get
    stand-in references (the random teacher on labelled noise): a term costs the same whatever it holds."""
    from datafree import build
    from datafree.feature_stats import record_teacher_stats

    spec = build.image_spec(config)
    torch.manual_seed(config.train.seed)
    teacher_net = build.build_net(config.teacher.arch, spec)
    student_net = build.build_net(config.student.arch, spec)
    noise = torch.randn(64, spec.channels, spec.image_size, spec.image_size)
    pooled, per_class = record_teacher_stats(teacher_net, [(noise, torch.arange(64) % spec.num_classes)],
                                             spec.num_classes)  # fmt: skip
    active = {t.name for t in config.synthesis if t.weight or t.schedule != "constant"}
    given = {k: v for k, v in {"feature_stats": pooled, "class_feature_stats": per_class}.items() if k in active}
    teacher = build.build_teacher(config, spec, net=teacher_net)
    return build.build_trainer(config, build.make_accelerator(config), teacher, student_net, spec, given=given)


class ModeBench:
    """Builds the recipe's trainer in one mode and answers timing requests about it."""

    def __init__(self, mode: str, recipe: Path):
        from datafree import build  # noqa: F401 -- with accelerate, before the RSS baseline: peak MB counts the run
        from datafree.config import from_dict, load_toml

        # the parent hands its workers the recipe with the command line's overrides applied, as JSON
        base = from_dict(json.loads(recipe.read_text())) if recipe.suffix == ".json" else load_toml(recipe)
        self.settings, self.base = mode_settings(mode), base
        self.trainer, self.step = None, 0
        self.out = tempfile.mkdtemp(prefix="bench_speed_")
        self.base_rss = rss_mb("VmRSS")

    def setup(self, batch: int, warmup: int) -> dict:
        """A fresh trainer at this batch, warmed up (and compiled) outside the timed region."""
        from datafree.build import reset_accelerate

        self.trainer = None
        reset_accelerate()
        torch._dynamo.reset()  # one static-shape compile per batch, as a real run (fixed batch) would have
        config = copy.deepcopy(self.base)
        config.train = replace(config.train, batch_size=batch, output_dir=self.out, trackers=[], **self.settings)
        tr = self.trainer = bench_trainer(config)
        if config.train.keep_host_memory:  # as train_dfl.py's run does
            from datafree.host_memory import keep_freed_host_memory

            keep_freed_host_memory(tr.accelerator.device)
        step_s = self.steps(max(1, warmup))["seconds"]
        if self.settings["compile"]:
            self.split(1)  # the pieces' own compiles (new guards) stay outside the timed region
            step_s = self.steps(1)["seconds"]  # the warmup above included compiling
        return {"device": str(tr.accelerator.device), "step_s": step_s, "images_per_step": tr.images_per_step}

    def flops(self) -> dict:
        """FLOPs of one train_step (forward + backward of everything in it) by FlopCounterMode."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.trainer.train_step(self.step)
        self.step += 1
        return {"flops": counter.get_total_flops()}

    def steps(self, iters: int) -> dict:
        """Mean seconds per ``train_step`` over ``iters`` (the parent takes medians over rounds) and peak memory."""
        device = self.trainer.accelerator.device
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        with contextlib.suppress(OSError):  # Linux: resets VmHWM to the current RSS, so each measurement has its peak
            Path("/proc/self/clear_refs").write_text("5")
        sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            self.trainer.train_step(self.step)
            self.step += 1
        sync(device)
        seconds = (time.perf_counter() - start) / iters
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else rss_mb("VmHWM") - self.base_rss
        return {"seconds": seconds, "peak_mb": peak}

    def split(self, iters: int) -> dict:
        """Seconds per step of each public piece of the step, timed one by one (LEGEND says what each holds)."""
        from datafree.synthesis import SynthBatch

        tr = self.trainer
        acc, synthesize = tr.accelerator, tr.synthesize
        totals: dict[str, float] = defaultdict(float)

        @contextlib.contextmanager
        def timed(name: str) -> Iterator[None]:
            sync(acc.device)
            start = time.perf_counter()
            yield
            sync(acc.device)
            totals[name] += time.perf_counter() - start

        for _ in range(iters):
            step, progress = self.step, self.step / tr.config.steps
            self.step += 1
            with timed("gen_teacher"):
                with acc.autocast():
                    images, teacher_out = synthesize(step)
                    asked = synthesize.last_labels
                    synth = SynthBatch(images, teacher_out, asked, tr.frozen_student_logits)
                    loss, _ = tr.objective(synth, progress)
                acc.backward(loss)
                tr.opt_g.step()
                tr.opt_g.zero_grad(set_to_none=True)
            fixed = images.detach().requires_grad_()
            with timed("teacher"):
                with acc.autocast():
                    synth = SynthBatch(fixed, tr.teacher(fixed), asked, tr.frozen_student_logits)
                    loss, _ = tr.objective(synth, progress)
                acc.backward(loss)
            batch = (images.detach(), synthesize.student_targets(images, teacher_out))
            tr.student_batches.remember(step, batch)
            for k in range(tr.config.student_steps):
                with timed("student_batches"):
                    images_k, targets_k = tr.student_batches(step, k, batch)
                with timed("student"):
                    with acc.autocast():
                        loss, _, _ = tr.student(images_k, targets_k, progress)
                    acc.backward(loss)
                    tr.opt_s.step()
                    tr.opt_s.zero_grad(set_to_none=True)
        times = {name: total / iters for name, total in totals.items()}
        times["generator"] = max(times.pop("gen_teacher") - times["teacher"], 0.0)
        return times


def worker_main(mode: str, recipe: Path) -> None:
    """Answer JSON-line requests from the parent until its pipe closes; only replies go to the pipe, everything
    else to the log. An exception becomes {"error": ...}: a failing mode (e.g. compile) is reported, the rest go on."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    bench = ModeBench(mode, recipe)
    try:
        for line in sys.stdin:
            request = json.loads(line)
            command = request.pop("cmd")
            try:
                result = getattr(bench, command)(**request)
            except Exception as err:  # noqa: BLE001
                print(f"{command} failed: {type(err).__name__}: {err}", file=sys.stderr)
                result = {"error": f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:160]}"}
            reply.write(json.dumps(result) + "\n")
    finally:
        shutil.rmtree(bench.out, ignore_errors=True)


# ---- parent side ---------------------------------------------------------------------------------------
class Worker:
    """One mode's process, driven by JSON lines over its stdin/stdout."""

    def __init__(self, name: str, recipe: Path, log_dir: Path, threads: int):
        self.name, self.compile = name, mode_settings(name)["compile"]
        self.error: str | None = None  # set once the mode cannot go on
        self.samples: dict[tuple[int, str], list] = defaultdict(list)  # (batch, kind) -> measurements
        self.log_path = log_dir / f"{name.replace('+', '_')}.log"
        self.log = self.log_path.open("w")
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                   "--recipe", str(recipe), "--threads", str(threads)]  # fmt: skip
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

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


def given_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--section.key value`` overrides (and --name, --synthesis[.term], --distill) the command line set."""
    given = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    given.update({k: getattr(args, k) for k in ("name", "synthesis", "distill") if getattr(args, k, None)})
    given.update({k: v for k, v in getattr(args, "synthesis_values", [])})
    return given


def record_table(workers: list[Worker], batches: list[int], ref_batch: int, info: dict, config, recipe: Path,
                 args: argparse.Namespace, argv: list[str] | None) -> Path:  # fmt: skip
    """What the table shows, per mode and batch: every round's seconds per step and images/s, their medians, the
    ratio to eager fp32 (medians), the peak memory and the split's medians; and the last line's best ratio."""
    from datafree.results import in_repo, record, results_path

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
    table = {"recipe": config.name, "recipe_file": in_repo(recipe, ROOT), "overrides": given_overrides(args), "seed": config.train.seed,
             "batches": batches, "reference_batch": ref_batch, "repeats": args.repeats, "iters": args.iters,
             "warmup": args.warmup, "threads": args.threads or torch.get_num_threads(), "device": info["device"],
             "step_flops": {str(b): f for b, f in info["flops"].items()}, "rows": rows, "best_mode": best,
             "speedup_vs_eager_fp32": finite(medians[("fp32", ref_batch)] / medians[(best, ref_batch)])}  # fmt: skip
    return record(results_path(args.record, ROOT), table, ROOT,
                  ["runs/bench_speed.py", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="fmnist", help="recipe name under runs/ or a .toml path")
    parser.add_argument("--batch-sizes", default="64,128,256,512", help="generator batch sizes to measure")
    parser.add_argument("--modes", default=DEFAULT_MODES, help="comma-separated; fp32 (the baseline) is always added")
    parser.add_argument("--iters", type=int, default=0, help=f"steps per measurement (0: about {TARGET_S:.0f} s each)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per mode and batch (compile happens here)")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin rounds; the table shows medians")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads per worker (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny run for tests: batch 16, fp32/cl/bf16, one round")
    parser.add_argument("--record", default="", metavar="NAME", help="also write the figures to results/NAME.json "
                        "(a path ending in .json: there), with their provenance")  # fmt: skip
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    add_override_arguments(parser)
    args = parse_args(parser, argv)
    recipe = Path(args.recipe) if args.recipe.endswith((".toml", ".json")) else ROOT / "runs" / f"{args.recipe}.toml"
    if args.threads:
        torch.set_num_threads(args.threads)  # workers apply it before any work; the parent only prints it
    if args.worker:
        worker_main(args.worker, recipe)
        return 0
    if args.quick:
        args.batch_sizes, args.modes, args.iters, args.warmup, args.repeats = "16", "fp32,cl,bf16", 1, 1, 1

    from datafree.config import ConfigError, load_toml

    try:
        config = apply_overrides(load_toml(recipe), args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    batches = sorted({int(b) for b in args.batch_sizes.split(",") if b})
    modes = list(dict.fromkeys(["fp32", *[m for m in args.modes.split(",") if m]]))
    for name in modes:
        mode_settings(name)  # a misspelt mode fails here, before any worker starts
    ref_batch = config.train.batch_size if config.train.batch_size in batches else batches[-1]

    print(f"# bench_speed: recipe {config.name} ({recipe})")
    print("command: PYTHONPATH=. .venv/bin/python runs/bench_speed.py", *(sys.argv[1:] if argv is None else argv))
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
        print(f"figures recorded in {record_table(workers, batches, ref_batch, info, config, recipe, args, argv)}")
    print(f"speedup_vs_eager_fp32: {speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
