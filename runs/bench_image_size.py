"""Does one default-preset step fit at ImageNet's scale? Parameters, peak memory and seconds per step by image size.

    python runs/bench_image_size.py [--sizes 32,64,128,224] [--batch 32] [--classes 1000]
        [--teacher torchvision:resnet18] [--student torchvision:mobilenet_v2] [--record NAME]

For each size, in a fresh process (so each peak is its own): the default preset's trainer (generator ``auto``: DAFL's
up to 32 px; above, the one for half the size enlarged twice, shown as ``x2``) around randomly initialised
networks, the statistics terms fed stand-in references (the random teacher on labelled noise: a term costs the
same whatever it holds), one warm-up step, then one timed ``train_step`` (the generator's step and its student
updates). Prints the generator's, the teacher's and the student's parameters, the peak resident memory over the
process's baseline (CPU; CUDA: peak allocated) and the seconds of the step. Nothing is downloaded: the networks
have random weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def measure(size: int, batch: int, classes: int, teacher_arch: str, student_arch: str) -> dict:
    """One size, in this process: build, warm up one step, time one step."""
    import torch

    from datafree import build
    from datafree.config import from_dict
    from datafree.nets.feature_stats import record_teacher_stats
    from datafree.models import create_model
    from datafree.nets.spec import ImageSpec
    from datafree.bench.common import rss_mb

    baseline = rss_mb("VmRSS")
    spec = ImageSpec(3, size, classes, *IMAGENET)
    config = from_dict({"name": f"size{size}", "preset": "default",
                        "train": {"batch_size": batch, "fresh_batch_size": batch, "output_dir": tempfile.mkdtemp(),
                                  "trackers": []}, "runtime": {"mixed_precision": "no"}})  # fmt: skip
    torch.manual_seed(0)
    teacher_net, student_net = create_model(teacher_arch, classes, 3), create_model(student_arch, classes, 3)
    noise = torch.randn(min(batch, 64), 3, size, size)
    pooled, per_class = record_teacher_stats(teacher_net, [(noise, torch.arange(len(noise)) % classes)], classes)
    teacher = build.build_teacher(config, spec, net=teacher_net)
    trainer = build.build_trainer(config, build.make_accelerator(config), teacher, student_net, spec,
                                  given={"feature_stats": pooled, "class_feature_stats": per_class})  # fmt: skip
    trainer.train_step(0)  # warm-up: allocations, first-call paths
    device = trainer.accelerator.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    trainer.train_step(1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss_mb("VmHWM") - baseline
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    generator = trainer.accelerator.unwrap_model(trainer.generator)
    inner = getattr(generator, "generator", generator)  # the conditional wrapper holds the registered generator
    return {"image_size": size, "batch": batch, "classes": classes, "generator": generator_label(inner),
            "generator_arch": config.generator.arch, "generator_params": count(generator),
            "teacher_params": count(teacher_net), "student_params": count(student_net),
            "peak_mb": round(peak, 1), "step_s": round(seconds, 3), "images_per_step": trainer.images_per_step,
            "device": str(device)}  # fmt: skip


def generator_label(net) -> str:
    """The generator's class; an enlarged one (generators/upsampled.py) as ``<class> x<factor>``."""
    from generators.upsampled import Upsampled

    return f"{type(net.inner).__name__} x{net.factor}" if isinstance(net, Upsampled) else type(net).__name__


def table(rows: list[dict]) -> str:
    lines = ["| px | generator (params) | teacher params | student params | peak memory MB | s per step | images per step |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['image_size']} | {r['generator']} ({r['generator_params'] / 1e6:.2f}M) | "
                     f"{r['teacher_params'] / 1e6:.2f}M | {r['student_params'] / 1e6:.2f}M | {r['peak_mb']:.0f} | "
                     f"{r['step_s']:.2f} | {r['images_per_step']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="32,64,128,224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--teacher", default="torchvision:resnet18")
    parser.add_argument("--student", default="torchvision:mobilenet_v2")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # the child: measure this size, print JSON
    parser.add_argument("--record", default="", metavar="NAME", help="also write the figures to results/NAME.json")
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure(args.one, args.batch, args.classes, args.teacher, args.student)))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        child = [sys.executable, __file__, "--one", str(size), "--batch", str(args.batch), "--classes", str(args.classes),
                 "--teacher", args.teacher, "--student", args.student]  # fmt: skip
        done = subprocess.run(child, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            print(f"{size} px failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append(json.loads(line[len("RESULT "):]))
        print(f"{size} px: {rows[-1]}", flush=True)
    from datafree.pipeline import hardware

    print(f"\n{table(rows)}\n\nbatch {args.batch}, {args.classes} classes, teacher {args.teacher}, student {args.student}, "
          f"preset default; {hardware()}")  # fmt: skip
    if args.record:
        import torch

        from datafree.io.results import record, results_path

        path = record(results_path(args.record, ROOT), {"rows": rows, "teacher": args.teacher, "student": args.student},
                      ROOT, ["runs/bench_image_size.py", *(sys.argv[1:] if argv is None else argv)],
                      threads=torch.get_num_threads())  # fmt: skip
        print(f"figures recorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
