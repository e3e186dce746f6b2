"""How much bf16 labelling forwards change the student's targets, on the images a finished run's generator makes.

    python runs/label_precision.py --run outputs/zoo15_b/mobilenet_small-mobilenet_tiny/seed_0 [--images 320]

Reads the run folder's ``config.json`` (validated like a recipe) and ``generator.safetensors``, and the teacher
checkpoint the run names; makes ``--images`` images (every class in turn for a conditional generator, from a
fixed seed) and labels them three ways: the teacher in fp32 (the reference), the BatchNorm-folded teacher in
bf16 (what ``runtime.label_precision = "auto"`` runs where bf16 is native), and the teacher itself in bf16. For
each it prints the share of images whose argmax matches the reference, the mean and largest KL(fp32 || other),
and, per class the images were made for, the teacher's mean probability of that class. On a CPU without native
bf16 the bf16 rows are emulated (slow, same numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch


def labels_three_ways(run: Path, images: int) -> dict:
    """{"classes": [...], "rows": {name: {"agree", "kl_mean", "kl_max", "p_asked": [per class]}}}."""
    from datafree import build
    from datafree.io.checkpoint import load_weights
    from datafree.config import ConfigError, from_dict, validate
    from datafree.nets.fold import folded_copy
    from datafree.nets.netcheck import load_network
    from datafree.report import class_names

    for name in ("config.json", "generator.safetensors"):
        if not (run / name).is_file():
            raise ConfigError(f"{run} has no {name}: pass the folder of a finished data-free run (outputs/<run>)")
    config = from_dict(json.loads((run / "config.json").read_text()))
    validate(config)
    if config.teacher.kind != "single":
        raise ConfigError(f"{run} ran teacher kind {config.teacher.kind!r}; this check reads one network (kind 'single')")
    spec = build.image_spec(config)
    generator = load_weights(build.build_generator(config, spec), run / "generator.safetensors", "generator").eval()
    teacher = load_network(config.teacher.arch, config.teacher_checkpoint, spec).eval()
    folded = folded_copy(teacher, torch.zeros(2, spec.channels, spec.image_size, spec.image_size))
    rng = torch.Generator().manual_seed(0)
    asked = torch.arange(images) % spec.num_classes
    with torch.no_grad():
        z = torch.randn(images, config.generator.latent_dim, generator=rng)
        x = generator(z, asked) if config.generator.conditional else generator(z)
        reference = teacher(x).float()
        if not config.generator.conditional:
            asked = reference.argmax(1)  # no asked class: the teacher's own
        others = {}
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            if folded is not None:
                others["bf16, BatchNorm folded"] = folded(x).float()
            others["bf16, the teacher itself"] = teacher(x).float()
    p_ref = reference.softmax(1)

    def row(logits: torch.Tensor) -> dict:
        p = logits.softmax(1)
        kl = (p_ref * (p_ref.clamp_min(1e-12).log() - p.clamp_min(1e-12).log())).sum(1)
        chosen = p[torch.arange(len(p)), asked]
        return {"agree": float((logits.argmax(1) == reference.argmax(1)).float().mean()),
                "kl_mean": float(kl.mean()), "kl_max": float(kl.max()),
                "p_asked": [float(chosen[asked == k].mean()) if (asked == k).any() else float("nan")
                            for k in range(spec.num_classes)]}  # fmt: skip

    names = list(spec.class_names) or class_names(run, spec.num_classes)
    return {"classes": names, "rows": {"fp32 (reference)": row(reference), **{k: row(v) for k, v in others.items()}}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished data-free run's folder")
    parser.add_argument("--images", type=int, default=320)
    args = parser.parse_args(argv)
    from datafree.config import ConfigError

    if args.images < 1:
        parser.error("--images must be at least 1")
    try:
        result = labels_three_ways(Path(args.run), args.images)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"# labels of {args.images} images from {args.run}'s generator")
    print("| labels | argmax = fp32's | KL mean | KL max | " + " | ".join(f"p({c})" for c in result["classes"]) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(result["classes"]))
    for name, r in result["rows"].items():
        print(f"| {name} | {r['agree']:.4f} | {r['kl_mean']:.5f} | {r['kl_max']:.4f} | "
              + " | ".join(f"{p:.3f}" for p in r["p_asked"]) + " |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
