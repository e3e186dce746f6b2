"""Accuracy on a real labelled dataset (overall and per class from one pass), sharded over processes."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def eval_loader(eval_set: Dataset, batch_size: int, num_workers: int, accelerator=None) -> DataLoader:
    """The real test set in fixed-order batches, sharded across processes when an Accelerator is given."""
    loader = DataLoader(eval_set, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return accelerator.prepare_data_loader(loader) if accelerator is not None else loader


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
