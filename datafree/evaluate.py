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
