"""``fresh``: update k > 0 of a step draws a NEW batch from the just-updated generator (G forward only).

About a third of a step's cost per extra update, and the student never trains twice on one image; ``size``
images per fresh batch (0: the generator's batch size) makes the extra updates cheaper still.
"""

from __future__ import annotations

import torch

from datafree.batches.base import BatchContext, SameBatch, register_batches
from datafree.batches.synthesizer import Batch
from datafree.config import ConfigError


@register_batches("fresh")
class FreshBatches(SameBatch):
    stage = 2

    def __init__(self, size: int = 0):
        if not isinstance(size, int) or size < 0 or size == 1:
            raise ConfigError(f"[[batches]] \"fresh\": size = {size!r} sizes the fresh batches: at least 2 images "
                              "(the generator has BatchNorm), or 0 for train.batch_size")  # fmt: skip
        self.size = size or None

    def check(self, context: BatchContext) -> None:
        self.needs_extra_updates(context)

    def attach(self, inner: SameBatch | None, context: BatchContext) -> None:
        self.inner, self.synthesize, self.autocast = inner or SameBatch(), context.synthesize, context.autocast

    @property
    def batch_size(self) -> int | None:
        return self.size

    def generated_images(self, student_steps: int) -> int:
        return (student_steps - 1) * (self.size or self.synthesize.batch_size)

    def __call__(self, step: int, k: int, batch: Batch) -> Batch:
        if k == 0:  # update 0 trains on G's own batch (augmented if asked)
            return self.inner(step, 0, batch)
        with torch.no_grad(), self.autocast():
            return self.synthesize(step, draw=k, augmented=True, for_student=True, size=self.size)
