"""``python -m datafree.cli.deploy outputs/<run>``: the run's student as ONNX (int8-stored weights too when the
student was quantized), each file checked with onnxruntime on the real test set (logits, accuracy, size, latency)."""

from __future__ import annotations

import argparse
import sys

from datafree.io.checkpoint import CheckpointError
from datafree.config import ConfigError
from datafree.data import DataMissingError


def main(argv: list[str] | None = None) -> int:
    from datafree.ship.deploy import TOLERANCE, deploy_run

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", help="a run folder written by train_dfl.py (config.json + student weights)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads for the latency figures")
    parser.add_argument("--no-check", action="store_true", help="export only (no onnxruntime pass over the test set)")
    args = parser.parse_args(argv)
    try:
        report = deploy_run(args.run, threads=args.threads, verify=not args.no_check)
    except (ConfigError, CheckpointError, DataMissingError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("| file | bytes | max abs logit diff | accuracy onnxruntime / PyTorch | ms per image, batch 1 / 64 |")
    print("|---|---:|---:|---|---|")
    for f in report["files"]:
        if "max_abs_logit_diff" not in f:
            print(f"| {f['file']} | {f['bytes']} | - | - | - |")
            continue
        print(f"| {f['file']} | {f['bytes']} | {f['max_abs_logit_diff']:.2e} | {100 * f['accuracy_onnxruntime']:.2f}% / "
              f"{100 * f['accuracy_pytorch']:.2f}% | {f['latency_ms_per_image_batch1']:.3f} / "
              f"{f['latency_ms_per_image_batch64']:.4f} ({f['threads']} thread(s)) |")  # fmt: skip
    bad = [f["file"] for f in report["files"] if f.get("within_tolerance") is False]
    if bad:
        print(f"error: {bad} differ from PyTorch by more than {TOLERANCE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
