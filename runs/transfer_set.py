"""How good are a saved generator's images as a transfer set? A fresh student trained on them alone, against the
same number of real training images.

    python runs/transfer_set.py outputs/<run>/[seed_N] [more runs of the same teacher] [--batches 200] [--steps 4000]

A data-free run's student learns from every state its generator passed through; this asks what the generator's
images are worth at the end, apart from that path, and whether images from several generators (other seeds or
recipes of the same teacher) together are worth more than one's. For each run folder (config.json,
generator.safetensors; the teacher as its recipe names it) it draws ``--batches`` un-augmented batches of the saved
generator at the run's last step (as ``class_gap.py`` does), labels them with the teacher's logits, and trains a
fresh network of the run's student architecture on them: Adam at 2e-3 with a cosine schedule, batches of 64, KD
at T = 4 (the default preset's student optimizer and loss), no augmentation, ``--steps`` updates. It prints the
student's accuracy on the real test set and its worst class for:

- each run's images alone;
- with several runs, an equal share of each run's images (the same number of images in all);
- as many real training images, labelled by the same teacher's logits (labels unused): the ceiling the
  images are measured against.

The real images are a yardstick only; no file is written. The first run's recipe gives the teacher, the data and
the student; the other runs must distill the same teacher checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

from datafree.bench.common import load_run, refused
from datafree.callbacks.precise_bn import DRAW
from datafree.config import ConfigError
from datafree.data import dataset_info, recipe_split
from datafree.io.checkpoint import CheckpointError
from datafree.models import create_model
from datafree.nets.evaluate import class_counts, overall, per_class
from datafree.nets.features import logits_of

TEMPERATURE = 4.0  # the default preset's KD temperature
BATCH = 64


@torch.no_grad()
def generated_set(run: Path, batches: int) -> tuple[torch.Tensor, torch.Tensor, object, object]:
    """(images, the teacher's logits on them, the run's trainer, its recipe): ``batches`` un-augmented batches of
    the saved generator at the run's last step. The trainer is this script's own (``load_run``): its generator and
    teacher are left in eval mode."""
    trainer, config = load_run(run)
    generator, teacher = trainer.accelerator.unwrap_model(trainer.generator).eval(), trainer.parts.teacher.eval()
    images, logits = [], []
    for i in range(batches):
        x, _ = trainer.synthesize.images(trainer.progress.step, DRAW + i, rank=0)
        images.append(x)
        logits.append(logits_of(teacher(x)).float())
    return torch.cat(images), torch.cat(logits), trainer, config


@torch.no_grad()
def real_set(teacher: nn.Module, config, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` real training images drawn without replacement and the teacher's logits on them (the teacher in
    eval mode, as :func:`generated_set` leaves it)."""
    split = recipe_split(config.data, train=True)
    if count > len(split):
        raise SystemExit(f"error: {count} images asked for, the training set has {len(split)}; lower --batches")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:count]
    images = torch.stack([split[int(i)][0] for i in order])
    logits = torch.cat([logits_of(teacher.eval()(images[i : i + 512])).float() for i in range(0, count, 512)])
    return images, logits


def train_student(arch: str, kwargs: dict, images: torch.Tensor, logits: torch.Tensor, steps: int,
                  seed: int = 0) -> nn.Module:  # fmt: skip
    """A fresh ``arch`` trained on (images, teacher logits) by KD at T = 4: Adam 2e-3, cosine, batches of 64."""
    torch.manual_seed(seed)
    net = create_model(arch, num_classes=logits.shape[1], in_channels=images.shape[1], **kwargs)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    draws = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        pick = torch.randint(len(images), (BATCH,), generator=draws)
        out = logits_of(net(images[pick])).float()
        target = F.softmax(logits[pick] / TEMPERATURE, dim=1)
        loss = F.kl_div(F.log_softmax(out / TEMPERATURE, dim=1), target, reduction="batchmean") * TEMPERATURE**2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return net.eval()


def shares(sets: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """An equal share of each set, as many images in all as the first set holds."""
    share = len(sets[0][0]) // len(sets)
    return (torch.cat([images[i * share : (i + 1) * share] for i, (images, _) in enumerate(sets)]),
            torch.cat([logits[i * share : (i + 1) * share] for i, (_, logits) in enumerate(sets)]))  # fmt: skip


def compare(runs: list[Path], batches: int, steps: int, seed: int = 0) -> list[tuple[str, float, list[float]]]:
    """(what the student learnt from, its real test accuracy, per class) for each set; printed as a table."""
    made = [generated_set(run, batches) for run in runs]
    trainer, config = made[0][2], made[0][3]
    checkpoints = {str(Path(m[3].teacher.checkpoint).resolve()) for m in made}  # one file under several names: one teacher
    if len(checkpoints) > 1:
        raise SystemExit(f"error: the runs distill different teachers ({', '.join(sorted(checkpoints))}); compare "
                         "runs of one teacher checkpoint")  # fmt: skip
    sets = [(f"generated: {run}", images, logits) for run, (images, logits, _, _) in zip(runs, made)]
    if len(runs) > 1:
        sets.append((f"generated: an equal share of each of the {len(runs)} runs", *shares([(m[0], m[1]) for m in made])))
    sets.append(("real training images, the teacher's logits", *real_set(trainer.parts.teacher, config, len(made[0][0]), seed)))
    names = dataset_info(config.data.name, like=config.data.like or None).class_names
    kwargs = dict(config.student.kwargs or {})
    print(f"a fresh {config.student.arch} on {len(made[0][0])} images per set, {steps} steps; accuracy on the real test set:")
    rows = []
    for what, images, logits in sets:
        net = train_student(config.student.arch, kwargs, images, logits, steps, seed)
        counts = class_counts(net, trainer.eval_loader)
        acc, classes = overall(counts), per_class(counts)  # None: a class the test set lacks
        worst = min((k for k, a in enumerate(classes) if a is not None), key=classes.__getitem__)
        print(f"  {100 * acc:6.2f}  worst {names[worst]} {100 * classes[worst]:.1f}  <- {what}")
        rows.append((what, acc, classes))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="data-free run folders of one teacher (config.json, generator.safetensors)")
    parser.add_argument("--batches", type=int, default=200, help="generator batches per run (of train.batch_size)")
    parser.add_argument("--steps", type=int, default=4000, help="student updates per set")
    parser.add_argument("--seed", type=int, default=0, help="the students' initialization and batch order; the real images drawn")
    args = parser.parse_args(argv)
    if refused(args.runs):
        return 2
    if args.batches < 1 or args.steps < 1:
        print("error: --batches and --steps must be at least 1", file=sys.stderr)
        return 2
    try:
        compare(args.runs, args.batches, args.steps, args.seed)
    except (CheckpointError, ConfigError) as error:  # a folder whose weights do not fit its recipe, a broken recipe
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
