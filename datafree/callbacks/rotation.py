"""Which classes the conditional generator is asked for when a batch cannot hold them all (K > batch size).

With K <= n, image i of every batch is made for class ``i mod K`` (:func:`generators.conditional.balanced_labels`):
every class in every batch, on every process. With more classes than images (a 100-class teacher at the default
batch of 64) that rule never asks for classes n .. K-1. ``RotatingLabels`` hands each batch a window of n
consecutive classes instead, and moves the window on with every batch made::

    label_i = (start + i) mod K,    start = (c * W + r) * n    (c: batches made so far, W processes, r: this rank)

so the W processes of a step ask for W * n different classes, a K-class cycle takes ceil(K / (W n)) batches, and
over whole cycles every class is asked for equally often. The generator's own batch of consecutive steps moves by
as many windows as batches are made per step (the student's fresh batches count too): with K = 100 and one
process at n = 64, two steps of generator batches alone cover 128 >= 100 classes. The ``quota`` callback then shares
each batch among its window's classes by their gaps (:class:`datafree.callbacks.quota.ClassQuota`), and
``blend`` blends on top.
The counter is saved with the training state, so a resumed run asks for the classes it would have.
"""

from __future__ import annotations

import torch

from datafree.callbacks.base import Callback
from generators.conditional import balanced_labels


class RotatingLabels(Callback):
    """``labels(n, device, rng)`` for the conditional generator: windows of consecutive classes that rotate, each
    class of a window asked for ``per_class`` times (the per-class statistics terms skip a class with fewer than two
    images in a batch, datafree/synthesis/feature_stats.py: with one image per class they would never act)."""

    order = 90  # last: the other callbacks keep their checkpoint entries' names

    def __init__(self, num_classes: int, rank: int = 0, world: int = 1, per_class: int = 1):
        self.num_classes, self.rank, self.world, self.per_class = num_classes, rank, world, per_class
        self.batches = 0  # batches made so far on this rank (every rank makes the same number)

    def window(self, n: int) -> int:
        """Classes in a batch of ``n``: n / per_class (at least one)."""
        return max(1, n // self.per_class)

    def start(self, n: int) -> int | None:
        """The first class of the next batch of ``n``, and the window moved on; None while K <= n (every class fits)."""
        if self.num_classes <= n:
            return None
        start = ((self.batches * self.world + self.rank) * self.window(n)) % self.num_classes
        self.batches += 1
        return start

    def labels(self, n: int, device: torch.device | str, rng: torch.Generator | None = None) -> torch.Tensor:
        start = self.start(n)
        if start is None:
            return balanced_labels(n, self.num_classes, device)
        return (start + torch.arange(n, device=device) // (n // self.window(n))) % self.num_classes

    def checkpoint_state(self):
        return self

    def state_dict(self) -> dict:
        return {"batches": torch.tensor(self.batches)}

    def load_state_dict(self, state: dict) -> None:
        self.batches = int(state["batches"])


def images_per_class(terms) -> int:
    """Images of each class in a rotated window: 2 when one of the generator's ``terms`` is per-class (it skips a
    class with fewer than two images in a batch: datafree/synthesis/feature_stats.py), else 1."""
    return 2 if any(getattr(term, "per_class", False) for term in terms) else 1


def label_order(num_classes: int, batch: int, conditional: bool, rank: int = 0, world: int = 1,
                per_class: int = 1) -> RotatingLabels | None:  # fmt: skip
    """The rotating windows of classes a conditional generator needs when a batch of ``batch`` cannot hold every
    class (K > batch); None otherwise (image i is for class i mod K)."""
    return RotatingLabels(num_classes, rank, world, per_class) if conditional and num_classes > batch else None
