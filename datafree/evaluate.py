"""Accuracy on a real labelled dataset, sharded over processes and gathered exactly once per call."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def accuracy(model: nn.Module, loader, accelerator=None) -> float:
    """Top-1 accuracy as a fraction; with an Accelerator the loader is sharded and results gathered."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long)
    total = torch.zeros((), dtype=torch.long)
    for images, labels in loader:
        logits = model(images)
        hits = (logits.argmax(dim=1) == labels)
        if accelerator is not None:
            hits = accelerator.gather_for_metrics(hits)
        correct = correct.to(hits.device) + hits.sum()
        total = total.to(hits.device) + hits.numel()
    model.train(was_training)
    return float(correct) / max(int(total), 1)


@torch.no_grad()
def per_class_accuracy(model: nn.Module, loader, num_classes: int, accelerator=None) -> list[float | None]:
    """Top-1 accuracy of each true class (None for a class absent from the set): where a student falls short."""
    was_training = model.training
    model.eval()
    hits = torch.zeros(num_classes, dtype=torch.long)
    seen = torch.zeros(num_classes, dtype=torch.long)
    for images, labels in loader:
        correct = model(images).argmax(dim=1) == labels
        if accelerator is not None:
            correct, labels = accelerator.gather_for_metrics((correct, labels))
        hits = hits.to(labels.device) + torch.bincount(labels[correct], minlength=num_classes)
        seen = seen.to(labels.device) + torch.bincount(labels, minlength=num_classes)
    model.train(was_training)
    return [int(h) / int(n) if n else None for h, n in zip(hits.tolist(), seen.tolist())]


def main(argv: list[str] | None = None) -> int:
    """Per-class accuracy of a saved student (and the recipe's teacher) on the recipe's real test set."""
    import argparse
    import sys

    from torch.utils.data import DataLoader

    from datafree import build
    from datafree.checkpoint import CheckpointError, load_weights
    from datafree.config import ConfigError, add_override_arguments, apply_overrides, load_toml
    from datafree.data import DataMissingError, dataset_info, load_tensors

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("student", help="a student_*.safetensors written by a run")
    parser.add_argument("--config", default="runs/fmnist.toml", help="the recipe the student was trained with")
    add_override_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = apply_overrides(load_toml(args.config), args)
        spec, d = build.image_spec(config), config.data
        test = load_tensors(d.name, root=d.root, train=False, download=d.download, like=d.like or None,
                            fake_size=d.fake_size or None)  # fmt: skip
        nets = {"teacher": build.load_teacher_net(config, spec),
                "student": load_weights(build.build_net(config.student.arch, spec), args.student, what="student")}  # fmt: skip
    except (ConfigError, DataMissingError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    loader = DataLoader(test, batch_size=d.eval_batch_size)
    rows = {role: per_class_accuracy(net, loader, spec.num_classes) for role, net in nets.items()}
    names = dataset_info(d.name, like=d.like or None).class_names
    print("| class | teacher | student |\n|---|---:|---:|")
    for k, name in enumerate(names):
        print(f"| {name} | {100 * rows['teacher'][k]:.2f}% | {100 * rows['student'][k]:.2f}% |")
    print(f"| all | {100 * accuracy(nets['teacher'], loader):.2f}% | {100 * accuracy(nets['student'], loader):.2f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
