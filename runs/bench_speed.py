"""Images/sec of the real data-free step (``DataFreeTrainer.train_step``) per precision / layout / compile mode.

    PYTHONPATH=. .venv/bin/python runs/bench_speed.py --recipe fmnist [--batches 64,128,256,512,1024]
        [--modes fp32,cl,bf16,compile,bf16+cl,cl+compile,bf16+cl+compile] [--iters 0] [--warmup 1] [--repeats 3]
        [--threads 0]
    PYTHONPATH=. .venv/bin/python runs/bench_speed.py --quick    # under a minute: batch 16, fp32/cl/bf16, one round

A mode is "+"-joined flags: fp32 | bf16 | fp16, cl (train.channels_last), compile (train.compile); "fp32" is the
eager fp32 NCHW loop, the in-run baseline. Every mode runs in its own worker process (Accelerate's state is
process-global, and a fresh process gives a clean peak-memory reading); this process drives the workers
round-robin, one at a time, and reports medians, so machine noise hits every mode alike and all ratios come
from one run. The last line is ``speedup_vs_eager_fp32: <ratio>``: best mode / eager fp32 at the recipe's batch.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

FLAGS = {"fp32", "bf16", "fp16", "cl", "compile"}
DEFAULT_MODES = "fp32,cl,bf16,compile,bf16+cl,cl+compile,bf16+cl+compile"
TARGET_S = 1.0  # --iters 0: iterations per timed measurement chosen so that one measurement lasts about this long


@dataclass(frozen=True)
class Mode:
    """One column of the comparison: the three trainer switches the benchmark varies."""

    name: str
    precision: str  # train.mixed_precision: "no" | "bf16" | "fp16"
    channels_last: bool
    compile: bool


def parse_mode(name: str) -> Mode:
    flags = set(name.split("+"))
    if flags - FLAGS or len(flags & {"fp32", "bf16", "fp16"}) > 1:
        raise SystemExit(f"mode {name!r}: use '+'-joined flags from {sorted(FLAGS)}, at most one precision")
    precision = "bf16" if "bf16" in flags else "fp16" if "fp16" in flags else "no"
    return Mode(name, precision, "cl" in flags, "compile" in flags)


def recipe_path(recipe: str) -> Path:
    """``fmnist`` -> runs/fmnist.toml; anything else is a path."""
    path = Path(recipe)
    return path if path.suffix == ".toml" or path.exists() else ROOT / "runs" / f"{recipe}.toml"


def sync(device: torch.device) -> None:
    """CPU ops are synchronous; CUDA needs an explicit wait before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mb(field_name: str = "VmRSS") -> float:
    """Current (VmRSS) or peak (VmHWM) resident memory of this process, in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"{field_name} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS, so each measurement gets its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_memory() -> None:
    """Hand freed heap back to the OS, so idle workers do not hold the last batch's activations."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ---- worker side: one mode, one process ----------------------------------------------------------------
class ModeBench:
    """Builds the recipe's trainer in one mode and answers timing requests about it."""

    def __init__(self, mode: Mode, recipe: Path):
        import accelerate  # noqa: F401 -- imported before the RSS baseline, so peak MB counts only the run itself

        from datafree import build  # noqa: F401
        from datafree.config import load_toml
        from datafree.trainer import DataFreeTrainer  # noqa: F401

        self.mode, self.base = mode, load_toml(recipe)
        self.trainer = None
        self.step = 0
        self.out = tempfile.mkdtemp(prefix="bench_speed_")
        self.base_rss = rss_mb() if Path("/proc/self/status").exists() else 0.0
        self.hwm_resettable = reset_peak_rss()

    def config(self, batch: int):
        config = copy.deepcopy(self.base)
        t = config.train
        t.batch_size, t.mixed_precision = batch, self.mode.precision
        t.channels_last, t.compile = self.mode.channels_last, self.mode.compile
        t.output_dir, t.trackers = self.out, []
        return config

    def drop_trainer(self) -> None:
        """Free the previous batch's trainer and Accelerate's global state before building the next one."""
        from accelerate.state import AcceleratorState, GradientState, PartialState

        self.trainer = None
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        PartialState._reset_state()
        torch._dynamo.reset()  # one static-shape compile per batch, as a real run (fixed batch) would have
        release_memory()

    @staticmethod
    def stand_in_stats(config, teacher_net, spec) -> dict:
        """Feature statistics (pooled, per class) of the random teacher on labelled noise, for the priors the
        recipe turns on: a prior costs the same whatever its reference holds."""
        from datafree.feature_stats import record_teacher_stats

        noise = torch.randn(64, spec.channels, spec.image_size, spec.image_size)
        labels = torch.arange(64) % spec.num_classes
        pooled, per_class = record_teacher_stats(teacher_net, [(noise, labels)], spec.num_classes)
        y = config.synthesis
        return {"feature_stats": pooled if y.feature_stats else None,
                "class_feature_stats": per_class if y.class_feature_stats else None}

    def setup(self, batch: int, warmup: int, count_flops: bool = False) -> dict:
        """Build generator/teacher/student through datafree.build, as the pipeline does, and warm up (compile).

        With ``count_flops`` the first warmup step runs under FlopCounterMode (an eager mode's step costs the same).
        """
        from accelerate.utils import set_seed

        from datafree import build
        from datafree.trainer import DataFreeTrainer

        self.drop_trainer()
        config = self.config(batch)
        spec = build.image_spec(config)
        set_seed(config.train.seed)
        teacher_net = build.build_net(config.teacher.arch, spec)  # random init: speed does not need a trained teacher
        student_net = build.build_net(config.student.arch, spec)
        accelerator = build.make_accelerator(config)
        teacher, student, generator = build.assemble(config, teacher_net, student_net, spec,
                                                     **self.stand_in_stats(config, teacher_net, spec))
        self.trainer = DataFreeTrainer(config, accelerator, teacher, student, generator, spec)
        self.device = accelerator.device
        start = time.perf_counter()
        flops = self.flops()["flops"] if count_flops else None
        step_s = time.perf_counter() - start
        for _ in range(max(1, warmup) - count_flops):
            step_s = self.steps(1)["seconds"]
        if self.mode.compile:
            self.split(1)  # the pieces' own compiles (new guards) stay outside the timed region
            step_s = self.steps(1)["seconds"]  # the warmup steps above included compiling
        return {"device": str(self.device), "flops": flops, "mixed_precision": accelerator.mixed_precision,
                "step_s": step_s}  # fmt: skip

    def steps(self, iters: int) -> dict:
        """Mean seconds per full train_step over ``iters`` (the parent takes medians over rounds) and peak memory."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.hwm_resettable:
            reset_peak_rss()
        sync(self.device)
        start = time.perf_counter()
        for _ in range(iters):
            self.trainer.train_step(self.step)
            self.step += 1
        sync(self.device)
        seconds = (time.perf_counter() - start) / iters
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif Path("/proc/self/status").exists():
            peak = rss_mb("VmHWM") - self.base_rss
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - self.base_rss
        return {"seconds": seconds, "peak_mb": peak}

    # the three pieces of train_step, timed separately with the same settings
    def piece_generator_teacher(self) -> None:
        """G update alone: G forward -> teacher forward -> DAFL (+adv) loss -> backward through the teacher -> step."""
        tr = self.trainer
        with tr.accelerator.autocast():
            images = tr.generator(tr.sample_latent(self.step))
            if self.mode.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            out = tr.teacher(images)
            loss, _ = tr.objective(out.logits, out.features[tr.penultimate])
            loss = loss + tr._image_priors(images, out, {})  # moment / TV / feature-stats priors, as in train_step
            if tr.config.synthesis.adv:  # optional DFAD term, as in train_step
                from datafree.synthesis import adversarial_loss

                loss = loss + tr.config.synthesis.adv * adversarial_loss(tr._frozen_student(images), out.logits)
        tr.accelerator.backward(loss)
        tr.opt_g.step()
        tr.opt_g.zero_grad(set_to_none=True)

    def piece_teacher(self) -> None:
        """Teacher alone: forward + DAFL loss + backward to the (fixed) images, as inside the G update."""
        tr = self.trainer
        images = tr._last[0].detach().requires_grad_()
        with tr.accelerator.autocast():
            out = tr.teacher(images)
            loss, _ = tr.objective(out.logits, out.features[tr.penultimate])
        tr.accelerator.backward(loss)

    def piece_student(self) -> None:
        """Student step alone: forward + losses on the detached batch, backward, optimizer step."""
        tr = self.trainer
        with tr.accelerator.autocast():
            loss, _, _ = tr.student(tr._last[0], self.targets, 0.0)
        tr.accelerator.backward(loss)
        tr.opt_s.step()
        tr.opt_s.zero_grad(set_to_none=True)

    def split(self, iters: int) -> dict:
        """Seconds per piece per step; generator = (generator+teacher) - teacher."""
        tr = self.trainer
        with tr.accelerator.autocast():
            self.targets = tr.teacher(tr._last[0]).detach()
        pieces = {"gen_teacher": self.piece_generator_teacher, "teacher": self.piece_teacher,
                  "student": self.piece_student}  # fmt: skip
        totals = dict.fromkeys(pieces, 0.0)
        for _ in range(iters):
            for name, piece in pieces.items():
                sync(self.device)
                start = time.perf_counter()
                piece()
                sync(self.device)
                totals[name] += time.perf_counter() - start
        return {name: total / iters for name, total in totals.items()}

    def flops(self) -> dict:
        """FLOPs of one full train_step (forward + backward of G, teacher and student) by FlopCounterMode."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.trainer.train_step(self.step)
        self.step += 1
        return {"flops": counter.get_total_flops()}

    def largest_conv(self):
        """The generator's Conv2d with the most FLOPs per image, and the per-image input shape it sees."""
        from datafree import build

        generator = build.build_generator(self.base, build.image_spec(self.base)).eval()
        shapes = {}
        convs = [m for m in generator.modules() if isinstance(m, torch.nn.Conv2d)]
        record = lambda m, i, o: shapes.__setitem__(m, (i[0].shape[1:], o.shape[1:]))  # noqa: E731
        hooks = [m.register_forward_hook(record) for m in convs]
        with torch.no_grad():
            generator(torch.randn(2, self.base.generator.latent_dim))
        for hook in hooks:
            hook.remove()
        kernel = lambda m: m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]  # noqa: E731
        flops = {m: 2 * shapes[m][1].numel() * kernel(m) for m in shapes}  # multiply-adds x 2, per image
        conv = max(flops, key=flops.get)
        return conv, tuple(shapes[conv][0]), flops[conv]

    def conv(self, batch: int, iters: int) -> dict:
        """GFLOP/s of the generator's largest conv (fwd, bwd-data, bwd-weight, all three) in this mode's settings."""
        conv, in_shape, flops_per_image = self.largest_conv()
        conv = conv.to(self.device)
        x = torch.randn(batch, *in_shape, device=self.device)
        if self.mode.channels_last:
            conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        autocast = self.trainer.accelerator.autocast
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mode.precision, torch.float32)
        with autocast():
            grad = torch.ones_like(conv(x))
        xs, ws = x.detach().to(dtype), conv.weight.detach().to(dtype)
        args = ([conv.out_channels], conv.stride, conv.padding, conv.dilation, False, [0, 0], conv.groups)

        def forward_backward() -> None:
            with autocast():
                y = conv(x)
            y.backward(grad)

        def forward() -> None:
            with autocast():
                conv(x)

        def backward(mask: list[bool]):
            return lambda: torch.ops.aten.convolution_backward(grad, xs, ws, *args, mask)

        passes = {"fwd_bwd": forward_backward, "fwd": forward, "bwd_data": backward([True, False, False]),
                  "bwd_weight": backward([False, True, True])}  # fmt: skip
        rates = {}
        for name, run in passes.items():
            run()
            sync(self.device)
            start = time.perf_counter()
            for _ in range(iters):
                run()
            sync(self.device)
            pass_flops = flops_per_image * batch * (3 if name == "fwd_bwd" else 1)
            rates[name] = pass_flops * iters / (time.perf_counter() - start) / 1e9
        k = conv.kernel_size
        shape = "x".join(map(str, (batch, *in_shape)))
        what = f"Conv2d({conv.in_channels}->{conv.out_channels}, {k[0]}x{k[1]}) on {shape}"
        return {"gflops": rates, "what": what}


def worker_main(mode_name: str, recipe: Path) -> None:
    """Answer JSON-line requests from the parent; only replies go to the pipe, everything else to the log."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    bench = ModeBench(parse_mode(mode_name), recipe)
    try:
        serve(bench, reply)
    finally:
        shutil.rmtree(bench.out, ignore_errors=True)


def serve(bench: ModeBench, reply) -> None:
    """One reply line per request line; an exception becomes {"error": ...} so the parent can report it."""
    for line in sys.stdin:
        request = json.loads(line)
        command = request.pop("cmd")
        if command == "quit":
            break
        try:
            result = getattr(bench, command)(**request)
        except Exception as err:  # noqa: BLE001 -- a failing mode (e.g. compile) is reported, the others go on
            first = (str(err).strip().splitlines() or [""])[0][:160]
            print(f"{command} failed: {type(err).__name__}: {err}", file=sys.stderr)
            result = {"error": f"{type(err).__name__}: {first}"}
        release_memory()
        reply.write(json.dumps(result) + "\n")


# ---- parent side ---------------------------------------------------------------------------------------
@dataclass
class Worker:
    """One mode's process, driven by JSON lines over its stdin/stdout."""

    mode: Mode
    recipe: Path
    log_dir: Path
    threads: int = 0
    error: str | None = None
    samples: dict = field(default_factory=dict)  # (batch, kind) -> list of measurements

    def __post_init__(self):
        self.log_path = self.log_dir / f"{self.mode.name.replace('+', '_')}.log"
        self.log = self.log_path.open("w")
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", self.mode.name,
                   "--recipe", str(self.recipe), "--threads", str(self.threads)]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def ask(self, cmd: str, **request) -> dict:
        if self.error:
            return {"error": self.error}
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **request}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            tail = [l for l in self.log_path.read_text().splitlines() if l.strip()][-1:] or ["no output"]
            self.error = f"worker died ({tail[0][:120]})"
            return {"error": self.error}
        return json.loads(line)

    def add(self, batch: int, kind: str, value) -> None:
        self.samples.setdefault((batch, kind), []).append(value)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its handle
                self.proc.wait()
        self.log.close()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cpu_info() -> str:
    """Threads and the ISA features that decide bf16 speed on CPU."""
    flags = ""
    try:
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")).split()
    except (OSError, StopIteration):
        pass
    isa = ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags) or "n/a"
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return (f"threads: torch {torch.get_num_threads()} intra-op / {torch.get_num_interop_threads()} inter-op, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; ATen CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}; ISA: {isa}; oneDNN bf16: {'yes' if bf16 else 'no'}")  # fmt: skip


def measure(workers: list[Worker], batches: list[int], ref_batch: int, args) -> dict:
    """Round-robin over modes: per batch, setup (warmup, compile) then ``repeats`` rounds of every measurement."""
    info = {"flops": {}, "conv_what": None, "device": None}
    bar = tqdm(total=len(batches) * (args.repeats + 1), desc="bench", dynamic_ncols=True, file=sys.stderr)
    for batch in batches:
        iters = {}
        counting = True  # the first eager mode counts the step's FLOPs during its warmup
        for w in workers:
            bar.set_postfix_str(f"batch {batch}: warmup {w.mode.name}")
            count = counting and not w.mode.compile
            result = w.ask("setup", batch=batch, warmup=args.warmup, count_flops=count)
            if "error" in result:
                reason = result["error"]
                w.add(batch, "error", f"compile failed: {reason}" if w.mode.compile else f"failed: {reason}")
                if w.mode.compile:
                    w.error = reason  # a compile that failed once fails again at the next batch: skip it
                continue
            info["device"] = info["device"] or result["device"]
            if count:
                info["flops"][batch], counting = result["flops"], False
            iters[w.mode.name] = args.iters or max(1, min(50, round(TARGET_S / max(result["step_s"], 1e-6))))
        bar.update(1)
        for repeat in range(args.repeats):
            order = workers[repeat % len(workers):] + workers[: repeat % len(workers)]
            live = [w for w in order if w.mode.name in iters]
            for w in live:
                bar.set_postfix_str(f"batch {batch}: round {repeat + 1} {w.mode.name}")
                result = w.ask("steps", iters=iters[w.mode.name])
                if "error" not in result:
                    w.add(batch, "step_s", result["seconds"])
                    w.add(batch, "peak_mb", result["peak_mb"])
            for w in live if repeat == 0 or batch == ref_batch else []:  # split: every round at ref_batch only
                result = w.ask("split", iters=max(1, iters[w.mode.name] // 2))
                if "error" not in result:
                    w.add(batch, "split", result)
            if batch == ref_batch:
                for w in live:
                    if not w.mode.compile:
                        result = w.ask("conv", batch=batch, iters=args.iters or 2)
                        if "error" not in result:
                            w.add(batch, "conv", result["gflops"])
                            info["conv_what"] = result["what"]
            bar.update(1)
    bar.close()
    return info


def report(workers: list[Worker], batches: list[int], ref_batch: int, info: dict) -> float:
    """Print the conv ceiling, the FLOP counts and the main table; return the speedup at the reference batch."""
    step_s = {(w.mode.name, b): median(w.samples.get((b, "step_s"), [])) for w in workers for b in batches}

    print(f"\n## FLOPs of one step (FlopCounterMode over one eager train_step: G, teacher, student; fwd + bwd)")
    for batch in batches:
        flops = info["flops"].get(batch)
        text = f"{flops / 1e9:.1f} GFLOP ({flops / batch / 1e6:.0f} MFLOP/image)" if flops else "n/a"
        print(f"- batch {batch}: {text}")

    print(f"\n## Conv ceiling: the generator's largest conv, {info['conv_what'] or 'n/a'}, median GFLOP/s")
    print("| layout / precision | fwd | bwd-data | bwd-weight | fwd+bwd |\n|---|---:|---:|---:|---:|")
    ceiling, ceiling_mode, best_pass = 0.0, "n/a", {}
    for w in workers:
        runs = w.samples.get((ref_batch, "conv"))
        if not runs:
            continue
        rate = {k: median([r[k] for r in runs]) for k in runs[0]}
        cells = " | ".join(f"{rate[k]:.0f}" for k in ("fwd", "bwd_data", "bwd_weight", "fwd_bwd"))
        print(f"| {w.mode.name} | {cells} |")
        if rate["fwd_bwd"] > ceiling:
            ceiling, ceiling_mode = rate["fwd_bwd"], w.mode.name
        for k in ("fwd", "bwd_data", "bwd_weight"):
            best_pass[k] = max(best_pass.get(k, (0.0, "")), (rate[k], w.mode.name))
    print(f"ceiling = best fwd+bwd = {ceiling:.0f} GFLOP/s ({ceiling_mode})")
    if best_pass:
        mixed = 3 / sum(1 / max(rate, 1e-9) for rate, _ in best_pass.values())
        print(f"(each pass in its own best setting, {', '.join(f'{k} {m}' for k, (_, m) in best_pass.items())}, "
              f"would give {mixed:.0f} GFLOP/s fwd+bwd)")

    print("\n## Full data-free step (DataFreeTrainer.train_step), medians of the round-robin rounds")
    print("| batch | mode | img/s | x eager fp32 | ms/step | peak MB | gen / teacher / student % | GFLOP/s "
          "| % of ceiling |")
    print("|---:|---|---:|---:|---:|---:|---|---:|---:|")
    for batch in batches:
        base = step_s.get(("fp32", batch), float("nan"))
        for w in workers:
            name = w.mode.name
            errors = w.samples.get((batch, "error"))
            if errors or not w.samples.get((batch, "step_s")):
                print(f"| {batch} | {name} | {(errors or ['no measurement'])[0]} | | | | | | |")
                continue
            seconds = step_s[(name, batch)]
            peak = max(w.samples[(batch, "peak_mb")])
            splits = w.samples.get((batch, "split"), [])
            gt, t, s = (median([x[k] for x in splits]) for k in ("gen_teacher", "teacher", "student"))
            total = gt + s
            parts = (max(gt - t, 0.0), t, s)
            shares = " / ".join(f"{100 * x / total:.0f}" for x in parts) if splits else "n/a"
            flops = info["flops"].get(batch)
            rate = flops / seconds / 1e9 if flops else float("nan")
            frac = f"{100 * rate / ceiling:.0f}%" if flops and ceiling else "n/a"
            print(f"| {batch} | {name} | {batch / seconds:.0f} | {base / seconds:.2f} | {1000 * seconds:.0f} | {peak:.0f} "
                  f"| {shares} | {rate:.0f} | {frac} |")  # fmt: skip

    measured = {n: s for (n, b), s in step_s.items() if b == ref_batch and not math.isnan(s)}
    if "fp32" not in measured:
        print("\nno eager fp32 measurement at the reference batch")
        return float("nan")
    best = min(measured, key=measured.get)
    speedup = measured["fp32"] / measured[best]
    flops = info["flops"].get(ref_batch)
    frac = f"{100 * flops / measured[best] / 1e9 / ceiling:.0f}% of the conv ceiling" if flops and ceiling else ""
    print(f"\nbest at batch {ref_batch}: {best}, {ref_batch / measured[best]:.0f} img/s = {speedup:.2f}x eager fp32 "
          f"(target >= 3x); {frac} (target >= 50%)")  # fmt: skip
    return speedup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="fmnist", help="recipe name under runs/ or a .toml path")
    parser.add_argument("--batches", default="64,128,256,512,1024")
    parser.add_argument("--modes", default=DEFAULT_MODES, help="comma-separated; fp32 (the baseline) is always added")
    parser.add_argument("--iters", type=int, default=0, help=f"steps per measurement (0: about {TARGET_S:.0f} s each)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per mode and batch (compile happens here)")
    parser.add_argument("--repeats", type=int, default=3, help="round-robin rounds; the table shows medians")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads per worker (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny run for tests: batch 16, fp32/cl/bf16, one round")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    recipe = recipe_path(args.recipe)
    if args.threads:
        torch.set_num_threads(args.threads)  # workers apply it before any work; the parent only prints it
    if args.worker:
        worker_main(args.worker, recipe)
        return 0
    if args.quick:
        args.batches, args.modes, args.iters, args.warmup, args.repeats = "16", "fp32,cl,bf16", 1, 1, 1

    from datafree.config import ConfigError, load_toml
    from datafree.pipeline import hardware

    try:
        config = load_toml(recipe)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    batches = sorted({int(b) for b in args.batches.split(",") if b})
    names = list(dict.fromkeys(["fp32", *[m for m in args.modes.split(",") if m]]))
    modes = [parse_mode(n) for n in names]
    ref_batch = config.train.batch_size if config.train.batch_size in batches else batches[-1]

    print(f"# bench_speed: recipe {config.name} ({recipe})")
    given = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"command: PYTHONPATH=. .venv/bin/python runs/bench_speed.py {given}")
    print(f"machine: {hardware()}; python {platform.python_version()}")
    print(cpu_info())
    load = os.getloadavg()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in load)}")
    if load[0] >= (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print("note: other jobs already fill the cores; OpenMP regions then stall on descheduled threads and "
              "multi-threaded timings get slow and noisy (compare with --threads 1)")
    g, s = config.generator, config.student
    print(f"models: generator {g.arch} (width {g.width}, latent {g.latent_dim}), teacher {config.teacher.arch} "
          f"(random init), student {s.arch} ({s.optimizer}), student_steps {config.train.student_steps}; "
          f"reference batch {ref_batch} (train.batch_size {config.train.batch_size})")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench_speed_logs_") as logs:
        workers = [Worker(m, recipe, Path(logs), args.threads) for m in modes]
        try:
            info = measure(workers, batches, ref_batch, args)
        finally:
            for w in workers:
                w.close()
    print(f"device: {info['device']}; load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"timing: each mode in its own process, {args.repeats} round-robin round(s) per batch, medians; iters per "
          f"measurement {args.iters or f'auto (~{TARGET_S:.0f} s)'}, warmup {args.warmup} step(s) + compile outside timing")  # fmt: skip
    print("split: pieces timed separately with the same settings: gen+teacher = G fwd -> teacher fwd -> DAFL loss -> "
          "backward -> G Adam step; teacher = teacher fwd + DAFL loss + backward to fixed images; student = fwd + "
          "losses + backward + step on the detached batch; generator = (gen+teacher) - teacher; % of the pieces' sum; "
          "medians of every round at the reference batch, first round only at the other batches")  # fmt: skip
    print("peak MB: on CPU peak RSS (VmHWM, reset per measurement) of the mode's process above its RSS after "
          "its imports; on CUDA torch.cuda.max_memory_allocated")  # fmt: skip
    speedup = report(workers, batches, ref_batch, info)
    print(f"speedup_vs_eager_fp32: {speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
