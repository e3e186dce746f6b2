"""What precise BatchNorm statistics (the ``precise_bn`` callback, datafree/callbacks/precise_bn.py) give a saved student, and why.

    python runs/precise_bn_check.py outputs/<run>/[seed_N] [...] [--batches 20] [--class-mass]

For each data-free run folder (its config.json, student_last.safetensors and generator.safetensors) prints the
student's accuracy on the real test set and its worst class, with the BatchNorm running statistics
- as saved (the run's own: whatever its recipe's ``precise_bn`` callback left there),
- recomputed as the ``precise_bn`` callback does (``--batches`` un-augmented batches of the saved generator; a blend's
  partner drawn uniformly: the run's measured partners are not saved with the weights),
- recomputed on the same batches flipped / shifted as the student's training batches are (the ``augment`` batch piece):
  if this stays near "as saved", the augmentation is what the running statistics carried,
- recomputed on as many real training images (an oracle: data the method never reads; only a yardstick).
A student without BatchNorm prints one row. ``--class-mass`` also prints, per class, the student's mean
probability over the teacher's (after the recomputation), on the generator's images and on the real test set:
where the two differ, the student parts from its teacher only on real images, and no data-free calibration of
its outputs has anything to fit. No file is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.optim.swa_utils import update_bn

ROOT = Path(__file__).resolve().parents[1]

from datafree.data import dataset_info, recipe_split
from datafree.nets.evaluate import class_counts, overall, per_class
from datafree.callbacks.precise_bn import DRAW, PreciseBatchNorm, has_batchnorm
from datafree.bench.common import load_run, refused


def describe(net: torch.nn.Module, loader, names: tuple[str, ...]) -> str:
    counts = class_counts(net, loader)
    rows = per_class(counts)
    worst = min(range(len(rows)), key=lambda k: rows[k] if rows[k] is not None else 2.0)
    return f"{100 * overall(counts):6.2f}  (worst {names[worst]} {100 * rows[worst]:.1f})"


@torch.no_grad()
def mass(net: torch.nn.Module, batches: list[torch.Tensor]) -> torch.Tensor:
    """The network's softmax summed over the batches, per class (eval mode)."""
    was_training = net.training
    net.eval()
    total = sum(getattr(out := net(x), "logits", out).float().softmax(dim=1).sum(dim=0) for x in batches)
    net.train(was_training)
    return total


def check(run: Path, batches: int, class_mass: bool = False) -> None:
    trainer, config = load_run(run, precise_bn=batches)
    net = trainer.student_net
    loader, names = trainer.eval_loader, dataset_info(config.data.name, like=config.data.like or None).class_names
    print(f"{run}: as saved            {describe(net.eval(), loader, names)}")
    if not has_batchnorm(net):
        return
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    PreciseBatchNorm(batches).recompute(trainer)
    print(f"{run}: precise_bn callback {describe(net.eval(), loader, names)}")
    if class_mass:
        synthetic = [trainer.synthesize.images(trainer.progress.step, DRAW + batches + i, rank=0)[0] for i in range(40)]
        print(f"{run}: student / teacher mean probability per class ({', '.join(names)})")
        for where, images in (("generator's images", synthetic), ("real test set", [x for x, _ in loader])):
            ratio = mass(net, images) / mass(trainer.parts.teacher, images)
            print(f"{run}:   {where:<18} " + " ".join(f"{r:.2f}" for r in ratio.tolist()))
    synthesize, rng = trainer.synthesize, torch.Generator().manual_seed(0)
    augment = synthesize.augmenter or (lambda images, _: images)
    with torch.no_grad():
        update_bn((augment(synthesize.images(trainer.progress.step, DRAW + i, rank=0)[0], rng)
                   for i in range(batches)), net)  # fmt: skip
    print(f"{run}: ... flipped/shifted  {describe(net.eval(), loader, names)}")
    real = recipe_split(config.data, train=True)
    index = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[: batches * config.train.batch_size]
    images = torch.stack([real[int(i)][0] for i in index]).split(config.train.batch_size)
    update_bn(images, net)
    print(f"{run}: real images (oracle) {describe(net.eval(), loader, names)}")
    net.load_state_dict(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with config.json and the saved weights)")
    parser.add_argument("--batches", type=int, default=20, help="batches for each recomputation (the precise_bn callback)")
    parser.add_argument("--class-mass", action="store_true",
                        help="also the student's mean probability per class over the teacher's, generated and real")
    args = parser.parse_args(argv)
    if refused(args.runs):
        return 2
    for run in args.runs:
        check(run, args.batches, args.class_mass)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
