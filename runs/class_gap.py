"""Where a saved data-free student parts from its teacher, class by class: generated images against real ones.

    python runs/class_gap.py outputs/<run>/[seed_N] [...] [--batches 40] [--blur S | --sharpen S]

For each run folder (config.json, student_last.safetensors, generator.safetensors) it draws ``--batches``
un-augmented batches of the saved generator at the run's last step (as the ``precise_bn`` callback does) and takes the
real test set, and prints per class k:
- ``spread``: the trace of the covariance of the teacher's penultimate features (the input of its last Linear)
  over the images made for k, over that of the real images of class k: under 1, the generator's images of k are
  narrower than the real ones as the teacher sees them;
- ``shift``: the distance between the two means over the real images' spread (sqrt of the trace);
- ``agree gen`` / ``agree real``: the share of the images the teacher calls k that the student also calls k,
  on generated and on real images. Where the real one falls far below the generated one, the student learnt
  the teacher's answer on what the generator makes for k and not on what k looks like;
- ``p gen`` / ``p real``: the teacher's mean probability of k on the images made for k and on the real images of
  k: how sure the teacher is of what the generator makes, against how sure it is of the real class;
- ``tv``: the images' total variation (mean absolute difference of neighbouring pixels, per image) made for k
  over that of the real images of k: above 1, the generator's images of k are rougher than real ones.
The real images are a yardstick only (the method never reads them). No file is written.

``--blur S`` / ``--sharpen S`` first blur every image (generated and real) by a Gaussian of S pixels, or sharpen
it by the same amount (x + (x - blur(x))), and print the teacher's and the student's accuracy on the real images
so changed: where the student's agreement moves much more than the teacher's accuracy, the student reads that
detail differently from its teacher (``train.augment_blur`` came from this).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

from datafree.augment import gaussian_blur
from datafree.data import dataset_info
from datafree.callbacks.precise_bn import DRAW
from datafree.synthesis.image_priors import image_total_variation as image_tv
from datafree.bench.common import load_run, refused


def logits_of(output) -> torch.Tensor:
    return getattr(output, "logits", output).float()


@torch.no_grad()
def penultimate(teacher: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the input of the teacher's last Linear, flattened; its logits): the hook is removed before returning."""
    last = [m for m in teacher.modules() if isinstance(m, nn.Linear)][-1]
    seen = {}
    handle = last.register_forward_hook(lambda module, args, out: seen.__setitem__("x", args[0].detach()))
    try:
        logits = logits_of(teacher(images))
    finally:
        handle.remove()
    return seen["x"].flatten(1).float(), logits


def changed(images: torch.Tensor, blur: float, sharpen: float) -> torch.Tensor:
    """The images blurred by ``blur`` pixels, or sharpened by ``sharpen`` (unsharp mask, amount 1), or as they are."""
    sigma = blur or sharpen
    if not sigma:
        return images
    blurred = gaussian_blur(images, torch.full((len(images),), sigma, device=images.device), math.ceil(3 * sigma))
    return blurred if blur else 2 * images - blurred


@torch.no_grad()
def gap(run: Path, batches: int, blur: float = 0.0, sharpen: float = 0.0) -> list[tuple]:
    """Per class: (name, spread, shift, agree gen, agree real, p gen, p real, tv), printed as a table."""
    trainer, config = load_run(run)
    student, generator = trainer.student_net, trainer.accelerator.unwrap_model(trainer.generator)
    teacher, step = trainer.parts.teacher, trainer.progress.step
    modes = [(m, m.training) for m in (student, generator, teacher)]
    for module, _ in modes:
        module.eval()
    try:
        rows = {"gen": ([], [], [], [], []), "real": ([], [], [], [], [])}  # features, teacher / student logits, class, tv
        for i in range(batches):
            images, made_for = trainer.synthesize.images(step, DRAW + i, rank=0)
            images = changed(images, blur, sharpen)
            if made_for is None:
                raise SystemExit(f"error: {run} has no conditional generator: nothing says what its images were made for")
            made_for = made_for.argmax(dim=1) if made_for.dim() == 2 else made_for  # a blend counts for its main class
            gen = (*penultimate(teacher, images), logits_of(student(images)), made_for, image_tv(images))
            for bucket, value in zip(rows["gen"], gen):
                bucket.append(value)
        for images, labels in trainer.eval_loader:
            images = changed(images, blur, sharpen)
            real = (*penultimate(teacher, images), logits_of(student(images)), labels, image_tv(images))
            for bucket, value in zip(rows["real"], real):
                bucket.append(value)
    finally:
        for module, was_training in modes:
            module.train(was_training)
    (gf, gt, gs, gk, gv), (rf, rt, rs, rk, rv) = ([torch.cat(b) for b in rows[w]] for w in ("gen", "real"))
    gp, rp = gt.softmax(dim=1), rt.softmax(dim=1)
    names = dataset_info(config.data.name, like=config.data.like or None).class_names
    what = f", blurred by {blur} px" if blur else f", sharpened by {sharpen} px" if sharpen else ""
    print(f"{run}: {len(gf)} generated images (step {step}), {len(rf)} real{what}; accuracy on the real ones: "
          f"teacher {float((rt.argmax(1) == rk).float().mean()):.3f}, student {float((rs.argmax(1) == rk).float().mean()):.3f}")
    print(f"{'class':<14}{'spread':>8}{'shift':>8}{'agree gen':>11}{'agree real':>12}{'p gen':>8}{'p real':>8}{'tv':>7}")
    table = []
    for k, name in enumerate(names):
        made, real = gf[gk == k], rf[rk == k]
        spread = float(made.var(dim=0).sum() / real.var(dim=0).sum())
        shift = float((made.mean(dim=0) - real.mean(dim=0)).norm() / real.var(dim=0).sum().sqrt())
        agree = [float((s.argmax(1)[t.argmax(1) == k] == k).float().mean()) for s, t in ((gs, gt), (rs, rt))]
        sure = [float(gp[gk == k, k].mean()), float(rp[rk == k, k].mean())]
        tv = float(gv[gk == k].mean() / rv[rk == k].mean())
        print(f"{name:<14}{spread:8.2f}{shift:8.2f}{agree[0]:11.2f}{agree[1]:12.2f}{sure[0]:8.2f}{sure[1]:8.2f}{tv:7.2f}")
        table.append((name, spread, shift, *agree, *sure, tv))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="data-free run folders (config.json and the saved weights)")
    parser.add_argument("--batches", type=int, default=40, help="generator batches to draw (of train.batch_size)")
    change = parser.add_mutually_exclusive_group()
    change.add_argument("--blur", type=float, default=0.0, help="blur every image by a Gaussian of this many pixels first")
    change.add_argument("--sharpen", type=float, default=0.0, help="sharpen every image by this many pixels first")
    args = parser.parse_args(argv)
    if refused(args.runs):
        return 2
    if args.batches < 1:
        print("error: --batches must be at least 1", file=sys.stderr)
        return 2
    if not (0 <= args.blur <= 4 and 0 <= args.sharpen <= 4):
        print("error: --blur / --sharpen are a Gaussian's width in pixels, in (0, 4]", file=sys.stderr)
        return 2
    for run in args.runs:
        gap(run, args.batches, args.blur, args.sharpen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
