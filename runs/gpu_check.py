"""One-shot GPU check: the Fashion-MNIST recipe in fp32 vs bf16, and the CIFAR-10 data-free step's throughput.

On the GPU machine (one H200, PyTorch + Accelerate, no internet; ~5-8 minutes), from the repository root:

    PYTHONUNBUFFERED=1 python runs/gpu_check.py --data-root .fmnist --teacher .teacher/teacher.safetensors \\
        --out $OUT/gpu_check.json [--record NAME]

On CPU, in well under a minute (what tests/test_gpu_check.py runs; its numbers mean nothing):

    OMP_NUM_THREADS=1 python runs/gpu_check.py --device cpu --smoke --output-root /tmp/gc --out /tmp/gc/x.json

1. Hardware line. 2. runs/fmnist.toml at --fmnist-steps (default: the recipe's 1,500), same seed, in fp32
(runtime.mixed_precision = "no") and bf16 autocast: images/s (its evaluations every 100 steps included), real
test accuracy (final, best), wall time. 3. runs/cifar10.toml's ResNet-34 -> ResNet-18 step on fake CIFAR-shaped
data (random teacher) at batch 256 and 1024 in the device's default precision ("auto": bf16 on CUDA): images/s,
peak GPU memory, achieved FLOP/s as a fraction of a large matmul's FLOP/s measured in the same process.

images/s = (images_last - images_first) / (time_s_last - time_s_first) over metrics.jsonl, the first log line
skipped as warm-up; "images" counts every generated image (for fmnist, the student's fresh batches too). FLOPs of
one step: torch.utils.flop_counter.FlopCounterMode (matmuls and convolutions, forward and backward) around a
1-step and a 2-step run; the difference is one step (evaluation and setup cancel), scaled linearly to each batch.
Without --teacher the LeNet-5 teacher is trained first (the recipe's 20 epochs). A failed run is a table row.
``--record NAME`` also writes the rows' figures (no run folders) with their provenance to results/NAME.json.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from datafree.config import Config, load_toml  # (no torch import: --device cpu still hides CUDA)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu"), default="auto", help="cpu hides CUDA")
    parser.add_argument("--smoke", action="store_true", help="tiny steps and batches on fake data: proves it runs")
    parser.add_argument("--data-root", default=None, help="the four Fashion-MNIST *-ubyte.gz (or FashionMNIST/raw/)")
    parser.add_argument("--teacher", default=None, help="trained LeNet-5 teacher.safetensors (stats file beside it)")
    parser.add_argument("--fmnist-steps", type=int, default=None, help="default: the recipe's (smoke: 4)")
    parser.add_argument("--cifar-steps", type=int, default=None, help="per batch size (default 40, smoke 3)")
    parser.add_argument("--cifar-batches", default=None, help="comma-separated (default 256,1024; smoke 2,4)")
    parser.add_argument("--output-root", default="outputs/gpu_check")
    parser.add_argument("--out", default=None, help="also write the rows as JSON to this file")
    parser.add_argument("--record", default="", metavar="NAME", help="also write the figures to results/NAME.json "
                        "(a path ending in .json: there), with their provenance")  # fmt: skip
    return parser.parse_args(argv)


def fresh_accelerate() -> None:
    """Accelerate allows one mixed precision per process; forget its global state before each run."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def rates(run_dir: Path) -> tuple[float, float]:
    """(images/s, steps/s) between the second and the last line of metrics.jsonl (the first is warm-up)."""
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    if len(lines) < 3:
        raise RuntimeError(f"{run_dir}/metrics.jsonl has {len(lines)} lines; need 3 (lower train.log_every)")
    first, last = lines[1], lines[-1]
    seconds = last["time_s"] - first["time_s"]  # time_s is read as a step is queued: CUDA may lag <~1 step
    return (last["images"] - first["images"]) / seconds, (last["step"] - first["step"]) / seconds


def matmul_flops_per_s() -> dict:
    """FLOP/s of a large square matmul in the device's default precision (bf16 on CUDA, fp32 on CPU), synchronized."""
    import torch

    cuda = torch.cuda.is_available()
    n, iters = (8192, 50) if cuda else (1024, 3)
    dtype = torch.bfloat16 if cuda else torch.float32
    a, b = (torch.randn(n, n, device="cuda" if cuda else "cpu", dtype=dtype) for _ in range(2))
    for count in (3, iters):  # warm-up, then timed
        start = time.perf_counter()
        for _ in range(count):
            a @ b
        torch.cuda.synchronize() if cuda else None
    rate = 2 * n**3 * iters / (time.perf_counter() - start)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "flops_per_s": rate}


def fmnist_config(args: argparse.Namespace, root: Path, precision: str, teacher: str) -> Config:
    """runs/fmnist.toml, set with dataclasses.replace: a field the library renames fails here, not silently."""
    c = load_toml(ROOT / "runs" / "fmnist.toml")
    c.teacher = replace(c.teacher, checkpoint=teacher)  # never the recipe's outputs/fmnist/...
    raw = args.data_root and (Path(args.data_root) / "FashionMNIST" / "raw").is_dir()
    c.data = replace(c.data, root=args.data_root if raw else str(root / "data"))
    steps = args.fmnist_steps or (4 if args.smoke else c.train.steps)
    label = "fp32" if precision == "no" else precision
    c.train = replace(c.train, output_dir=str(root / f"fmnist-{label}"), overwrite=True, steps=steps,
                      log_every=max(1, min(20, steps // 10)))  # fmt: skip
    c.runtime = replace(c.runtime, mixed_precision=precision)
    if args.smoke:
        c.data = replace(c.data, name="fake", like="fashion-mnist", fake_size=64, eval_batch_size=64)
        c.teacher_training = replace(c.teacher_training, epochs=1, batch_size=16, route_every=1)
        c.train = replace(c.train, batch_size=8, eval_every=2)
        c.runtime = replace(c.runtime, channels_last=False)
    return c


def cifar_config(args: argparse.Namespace, root: Path, batch: int, steps: int, teacher: str, name: str) -> Config:
    c = load_toml(ROOT / "runs" / "cifar10.toml")
    c.teacher = replace(c.teacher, checkpoint=teacher)
    c.data = replace(c.data, name="fake", like="cifar10")
    if args.smoke:  # 16 fake test images: evaluating a ResNet-34 on the default 512 takes a CPU many seconds
        c.data = replace(c.data, fake_size=16, eval_batch_size=16)
    c.train = replace(c.train, output_dir=str(root / name), overwrite=True, batch_size=batch, steps=steps,
                      log_every=1 if steps < 10 else max(1, steps // 4),
                      eval_every=steps, sample_every=steps, checkpoint_every=steps)  # none inside the timed lines
    c.runtime = replace(c.runtime, mixed_precision="auto")
    return c


def step_flops(config: Config) -> float:
    """FLOPs of one data-free step at config's batch: a 2-step run minus a 1-step run, both counted."""
    from torch.utils.flop_counter import FlopCounterMode

    from datafree.pipeline import distill_from_config

    totals = []
    for steps in (1, 2):
        c = copy.deepcopy(config)
        c.train = replace(c.train, steps=steps, log_every=steps, eval_every=steps, sample_every=steps,
                          checkpoint_every=steps, output_dir=f"{config.train.output_dir}-flops{steps}", overwrite=True)  # fmt: skip
        fresh_accelerate()
        with FlopCounterMode(display=False) as counter:
            distill_from_config(c)
        totals.append(counter.get_total_flops())
    return float(totals[1] - totals[0])


def attempt(name: str, measure: Callable[[], dict]) -> dict:
    """One row; a failure is printed and kept in the table (and the exit code) instead of ending the check."""
    try:
        return measure()
    except Exception as err:  # noqa: BLE001 -- one shot on the GPU machine: keep the other rows
        traceback.print_exc()
        return {"run": name, "error": f"{type(err).__name__}: {err}"[:300], "images_per_s": math.nan}


def fmnist_row(args: argparse.Namespace, root: Path, precision: str, teacher: str) -> dict:
    from datafree.pipeline import distill_from_config

    config = fmnist_config(args, root, precision, teacher)
    print(f"== fmnist, mixed_precision={precision}, {config.train.steps} steps", flush=True)
    fresh_accelerate()
    start = time.perf_counter()
    results = distill_from_config(config)
    images_per_s, _ = rates(Path(config.train.output_dir))
    print(f"   {images_per_s:,.0f} images/s, student final {results['student_acc_final']}", flush=True)
    return {"run": f"fmnist {'fp32' if precision == 'no' else precision}", "precision": results["mixed_precision"],
            "batch": config.train.batch_size, "steps": results["steps"], "images_per_s": images_per_s,
            "acc_final": results["student_acc_final"], "acc_best": results["student_acc_best"],
            "teacher_acc": results["teacher_acc"], "wall_s": time.perf_counter() - start,
            "distill_s": results["wall_time_s"], "output_dir": config.train.output_dir}  # fmt: skip


def cifar_row(config: Config, flops_per_image: float | None, matmul: dict) -> dict:
    import torch

    from datafree.pipeline import distill_from_config

    cuda, batch = torch.cuda.is_available(), config.train.batch_size
    print(f"== cifar10 throughput, batch {batch}, {config.train.steps} steps", flush=True)
    fresh_accelerate()
    if cuda:  # the previous runs' tensors freed, so the peak is this run's own
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    results = distill_from_config(config)
    images_per_s, steps_per_s = rates(Path(config.train.output_dir))
    flops = flops_per_image * batch if flops_per_image else None  # convolutions and matmuls: linear in the batch
    achieved = flops * steps_per_s if flops else None
    fraction = achieved / matmul["flops_per_s"] if achieved else None
    print(f"   {images_per_s:,.0f} images/s, {fraction or math.nan:.1%} of the matmul rate", flush=True)
    return {"run": f"cifar10 b{batch}", "precision": results["mixed_precision"], "batch": batch,
            "steps": results["steps"], "images_per_s": images_per_s, "acc_final": None, "acc_best": None,
            "wall_s": time.perf_counter() - start, "distill_s": results["wall_time_s"],
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None, "step_flops": flops,
            "achieved_flops_per_s": achieved, "matmul_fraction": fraction,
            "output_dir": config.train.output_dir}  # fmt: skip


def measure_all(args: argparse.Namespace, root: Path, matmul: dict) -> list[dict]:
    import torch

    from datafree.io.checkpoint import save_weights
    from datafree.models import create_model
    from datafree.supervised import train_teacher

    teacher = args.teacher or str(root / "fmnist-teacher" / "teacher.safetensors")
    if not args.teacher:
        config = fmnist_config(args, root, "no", teacher)
        print(f"== training the teacher ({config.teacher_training.epochs} epochs on {config.data.name})", flush=True)
        fresh_accelerate()
        attempt("fmnist teacher", lambda: train_teacher(config))
    rows = [attempt(f"fmnist {label}", lambda p=p: fmnist_row(args, root, p, teacher))
            for p, label in (("no", "fp32"), ("bf16", "bf16"))]  # fmt: skip
    batches = [int(b) for b in (args.cifar_batches or ("2,4" if args.smoke else "256,1024")).split(",")]
    steps = args.cifar_steps or (3 if args.smoke else 40)
    cifar_teacher = str(root / "cifar-teacher" / "random_resnet34.safetensors")  # throughput needs no training
    torch.manual_seed(0)
    save_weights(create_model("resnet34", num_classes=10), cifar_teacher, {"arch": "resnet34", "num_classes": 10})
    configs = [cifar_config(args, root, b, steps, cifar_teacher, f"cifar10-b{b}") for b in batches]
    print(f"== counting the FLOPs of one ResNet-34 -> ResNet-18 step at batch {batches[0]}", flush=True)
    counted = attempt("cifar10 FLOP count", lambda: {"flops": step_flops(configs[0])})
    flops_per_image = counted["flops"] / batches[0] if "flops" in counted else None
    return rows + [attempt(f"cifar10 b{c.train.batch_size}", lambda c=c: cifar_row(c, flops_per_image, matmul))
                   for c in configs]  # fmt: skip


def markdown(rows: list[dict]) -> str:
    num = lambda v, f, scale=1: "n/a" if v is None else format(v * scale, f)  # noqa: E731
    lines = ["| run | precision | batch | images/s | acc final / best % | wall s | peak mem GiB | TFLOP/s "
             "| of matmul rate |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['run']} | failed: {r['error'][:100]} |" + " |" * 7)
            continue
        acc = f"{num(r['acc_final'], '.2f', 100)} / {num(r['acc_best'], '.2f', 100)}"
        acc = "-" if r["run"].startswith("cifar") else acc  # random teacher: its accuracy means nothing
        precision = "fp32" if r["precision"] == "no" else r["precision"]
        lines.append(f"| {r['run']} | {precision} | {r['batch']} | {r['images_per_s']:,.0f} | {acc} "
                     f"| {r['wall_s']:.1f} | {num(r.get('peak_mem_gib'), '.2f')} "
                     f"| {num(r.get('achieved_flops_per_s'), '.2f', 1e-12)} | {num(r.get('matmul_fraction'), '.1%')} |")
    return "\n".join(lines)


RECORDED = ("run", "precision", "batch", "steps", "images_per_s", "acc_final", "acc_best", "teacher_acc", "wall_s",
            "distill_s", "peak_mem_gib", "step_flops", "achieved_flops_per_s", "matmul_fraction", "error")


def record_rows(rows: list[dict], matmul: dict, args: argparse.Namespace, argv: list[str] | None) -> Path:
    """The rows' figures (each with its precision, batch and steps) without their run folders (NaN, a failed row's
    images/s, as null), the recipes' seeds and the matmul rate the fractions divide by, with their provenance."""
    from datafree.io.results import record, results_path

    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731  (JSON has no NaN)
    compact = [{k: clean(r[k]) for k in RECORDED if k in r} for r in rows]
    seeds = {name: load_toml(ROOT / "runs" / f"{name}.toml").train.seed for name in ("fmnist", "cifar10")}
    table = {"smoke": args.smoke, "seeds": seeds, "teacher": "given" if args.teacher else "trained here",
             "matmul": matmul, "rows": compact}  # each row holds its own steps and batch
    return record(results_path(args.record, ROOT), table, ROOT,
                  ["runs/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported (below)
    if args.data_root:  # datafree.data gunzips the *-ubyte.gz files found there into data.root
        os.environ["DATAFREE_FMNIST_DIR"] = str(Path(args.data_root).resolve())
    import torch

    from datafree.pipeline import hardware

    start, root = time.perf_counter(), Path(args.output_root)
    line = f"{hardware()}; CUDA {torch.version.cuda or 'n/a'}; cuDNN {torch.backends.cudnn.version() or 'n/a'}"
    print(f"hardware: {line}", flush=True)
    matmul = matmul_flops_per_s()
    rate = f"matmul {matmul['n']}x{matmul['n']} {matmul['dtype']}: {matmul['flops_per_s'] / 1e12:.2f} TFLOP/s"
    print(rate, flush=True)
    rows = measure_all(args, root, matmul)
    table = markdown(rows)
    print(f"\n{line}\n\n{table}\n\n{rate}; total {time.perf_counter() - start:.0f} s")
    bad = [r["run"] for r in rows if not (math.isfinite(r["images_per_s"]) and r["images_per_s"] > 0)]  # or failed
    if args.out:
        report = {"hardware": line, "smoke": args.smoke, "matmul": matmul, "rows": rows, "table": table,
                  "total_wall_s": time.perf_counter() - start}  # fmt: skip
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    if args.record:
        print(f"figures recorded in {record_rows(rows, matmul, args, argv)}")
    if bad:
        print(f"error: no measurement for {bad}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
