"""Accuracy on a real labelled dataset (overall, per class, confusion matrix from one pass), sharded over processes."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from datafree.nets.features import logits_of


def eval_loader(eval_set: Dataset, batch_size: int, num_workers: int, accelerator=None) -> DataLoader:
    """The real test set in fixed-order batches, sharded across processes when an Accelerator is given."""
    loader = DataLoader(eval_set, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return accelerator.prepare_data_loader(loader) if accelerator is not None else loader


@torch.no_grad()
def confusion_counts(model: nn.Module, loader, accelerator=None) -> torch.Tensor:
    """(K, K) image counts, [true class, predicted class], in ONE pass; with an Accelerator sharded and gathered."""
    was_training = model.training
    model.eval()
    matrix = None
    for images, labels in loader:
        logits = logits_of(model(images))
        predicted = logits.argmax(dim=1)
        if accelerator is not None:
            predicted, labels = accelerator.gather_for_metrics((predicted, labels))
        k = logits.shape[1]
        batch = torch.bincount(labels * k + predicted, minlength=k * k).view(k, k)
        matrix = batch if matrix is None else matrix + batch.to(matrix.device)
    model.train(was_training)
    return matrix if matrix is not None else torch.zeros(0, 0, dtype=torch.long)


def counts_of(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, seen) per true class: a confusion matrix's diagonal and row sums."""
    return matrix.diagonal().clone(), matrix.sum(dim=1)


def class_counts(model: nn.Module, loader, accelerator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, seen) per true class in ONE pass."""
    return counts_of(confusion_counts(model, loader, accelerator))


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
