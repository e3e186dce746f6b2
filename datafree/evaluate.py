"""Accuracy on a real labelled dataset (overall and per class from one pass), sharded over processes."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def class_counts(model: nn.Module, loader, accelerator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, seen) per true class in ONE pass; with an Accelerator the loader is sharded and results gathered."""
    was_training = model.training
    model.eval()
    hits = seen = None
    for images, labels in loader:
        logits = model(images)
        correct = logits.argmax(dim=1) == labels
        if accelerator is not None:
            correct, labels = accelerator.gather_for_metrics((correct, labels))
        k = logits.shape[1]
        hits = torch.bincount(labels[correct], minlength=k) + (0 if hits is None else hits.to(labels.device))
        seen = torch.bincount(labels, minlength=k) + (0 if seen is None else seen.to(labels.device))
    model.train(was_training)
    if hits is None:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return hits, seen


def overall(counts: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Top-1 accuracy as a fraction, from :func:`class_counts`."""
    hits, seen = counts
    return int(hits.sum()) / max(int(seen.sum()), 1)


def per_class(counts: tuple[torch.Tensor, torch.Tensor]) -> list[float | None]:
    """Accuracy of each true class (None for a class absent from the set), from :func:`class_counts`."""
    hits, seen = counts
    return [int(h) / int(n) if n else None for h, n in zip(hits.tolist(), seen.tolist())]


def accuracy(model: nn.Module, loader, accelerator=None) -> float:
    """Top-1 accuracy as a fraction."""
    return overall(class_counts(model, loader, accelerator))


def per_class_accuracy(model: nn.Module, loader, accelerator=None) -> list[float | None]:
    """Top-1 accuracy of each true class: where a student falls short of its teacher."""
    return per_class(class_counts(model, loader, accelerator))


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
    counts = {role: class_counts(net, loader) for role, net in nets.items()}
    rows = {role: per_class(c) for role, c in counts.items()}
    names = dataset_info(d.name, like=d.like or None).class_names
    print("| class | teacher | student |\n|---|---:|---:|")
    for k, name in enumerate(names):
        print(f"| {name} | {100 * rows['teacher'][k]:.2f}% | {100 * rows['student'][k]:.2f}% |")
    print(f"| all | {100 * overall(counts['teacher']):.2f}% | {100 * overall(counts['student']):.2f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
