"""The worker side of ``datafree bench speed``: one precision / layout / compile mode in its own process.

Accelerate's state is process-global and a fresh process gives a clean peak memory, so each mode is measured in a
process of its own (``python -m datafree.bench.speed_worker MODE RECIPE THREADS``), which answers the parent's
JSON-line requests (``setup``, ``flops``, ``steps``, ``split``) until its stdin closes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import torch

from datafree.bench.common import rss_mb

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def mode_settings(name: str) -> dict[str, Any]:
    """A mode (one column of the comparison) as the [runtime] keys it sets."""
    flags = set(name.split("+"))
    if flags - {*PRECISIONS, "cl", "compile"} or len(flags & set(PRECISIONS)) > 1:
        raise SystemExit(f"mode {name!r}: '+'-join at most one of {sorted(PRECISIONS)} with cl and/or compile")
    precision = next((PRECISIONS[f] for f in flags if f in PRECISIONS), "no")
    return {"mixed_precision": precision, "channels_last": "cl" in flags, "compile": "compile" in flags}


def sync(device: torch.device) -> None:
    """CPU ops are synchronous; CUDA needs an explicit wait before reading the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_trainer(config):
    """The recipe's trainer through datafree.build, around random nets; the feature-statistics terms get
    stand-in references (the random teacher on labelled noise): a term costs the same whatever it holds."""
    from datafree import build
    from datafree.nets.feature_stats import record_teacher_stats

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
        config.train = replace(config.train, batch_size=batch, output_dir=self.out, trackers=[])
        config.runtime = replace(config.runtime, **self.settings)
        tr = self.trainer = bench_trainer(config)
        if config.runtime.keep_host_memory:  # as train_dfl.py's run does
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


def main(argv: list[str] | None = None) -> int:
    mode, recipe, threads = sys.argv[1:] if argv is None else argv
    if int(threads):
        torch.set_num_threads(int(threads))  # before any work
    worker_main(mode, Path(recipe))
    return 0


if __name__ == "__main__":
    sys.exit(main())
