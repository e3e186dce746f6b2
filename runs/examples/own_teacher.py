"""Your own teacher, from Python: an ``nn.Module`` you trained (here: trained for you on real Fashion-MNIST), its
feature statistics recorded once from its training data, then a student distilled without a training image.

    python runs/examples/own_teacher.py [--minutes 5] [--output-root outputs/own_teacher] [--smoke]

One concept: :func:`datafree.distill_datafree` with user modules. The teacher is a small CNN without BatchNorm, so
nothing in its weights describes its training data: the statistics are recorded (``record_teacher_stats``) and
passed (``feature_stats=`` / ``class_feature_stats=``). --smoke: generated stand-in data, seconds, numbers meaningless.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

import datafree
from datafree.bench.args import bench_parser, parse
from datafree.data import dataset_info, load_tensors
from datafree.nets.feature_stats import record_teacher_stats


def small_cnn(width: int) -> nn.Module:
    """A plain CNN (no BatchNorm) for 32x32 grayscale images and 10 classes."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4 * width, 10),
    )  # fmt: skip


def train(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int) -> nn.Module:
    """A few epochs of Adam on the real training set: the user's own training, before datafree is involved."""
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(images)).split(128):
            loss = F.cross_entropy(net(images[batch]), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, recipe=None, output_root="outputs/own_teacher", record=False, overrides=False)
    parser.add_argument("--minutes", type=float, default=5.0, help="the distillation's wall-time budget")
    args = parse(parser, argv)
    data = dict(name="fake", like="fashion-mnist", fake_size=256) if args.smoke else dict(name="fashion-mnist")
    name = data.pop("name")
    train_set = load_tensors(name, root="data", train=True, **data)
    test_set = load_tensors(name, root="data", train=False, **data)
    torch.manual_seed(0)
    teacher = train(small_cnn(32), *train_set.tensors, epochs=1 if args.smoke else 3)
    images, labels = train_set.tensors
    pooled, per_class = record_teacher_stats(teacher, zip(images.split(1000), labels.split(1000)), num_classes=10)
    student = small_cnn(8)
    info = dataset_info("fashion-mnist")
    results = datafree.distill_datafree(
        teacher, student, image_size=32, channels=1, num_classes=10, mean=info.mean, std=info.std,
        class_names=list(info.class_names), eval_set=test_set, feature_stats=pooled, class_feature_stats=per_class,
        train={"output_dir": args.output_root, "overwrite": True, "max_minutes": 0.05 if args.smoke else args.minutes,
               "batch_size": 16 if args.smoke else 64},
    )  # fmt: skip
    print(f"teacher {results['teacher_acc']:.4f}, student {results['student_acc_final']:.4f} "
          f"(read beyond the weights: {'; '.join(results['uses']) or 'nothing'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
