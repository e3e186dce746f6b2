"""``augment``: the student's batches flipped / shifted / blurred / brightened or darkened / recoloured / mixed,
and relabelled by the teacher.

The step's own batch is transformed here; the batches the later pieces draw (``fresh``, ``pool``) are
transformed the same way by the synthesizer, which this piece hands its :class:`Augmenter`. The teacher labels
what the student actually sees, so an augmentation never needs to preserve the class (datafree/augment.py).
"""

from __future__ import annotations

import torch

from datafree.augment import AugmentSettings
from datafree.batches.base import BatchContext, SameBatch, register_batches
from datafree.batches.synthesizer import Augmenter, Batch
from datafree.config import ConfigError


@register_batches("augment")
class Augmented(SameBatch):
    stage = 1

    def __init__(self, flip: bool = False, shift: int = 0, mix: float = 0.0, blur: float = 0.0, brightness: float = 0.0,
                 colour: float = 0.0):
        # what each value means and the checks on it: datafree/augment.py AugmentSettings
        self.settings = AugmentSettings(flip=flip, shift=shift, blur=blur, brightness=brightness, colour=colour,
                                        mix=mix)  # fmt: skip
        if not self.settings.any_on():
            raise ConfigError("[[batches]] \"augment\" with nothing on: set flip, shift, mix, blur, brightness or "
                              "colour, or drop the piece")  # fmt: skip

    def attach(self, inner: SameBatch | None, context: BatchContext) -> None:
        self.inner, self.synthesize, self.autocast = inner, context.synthesize, context.autocast
        self.synthesize.augmenter = Augmenter(self.settings, context.spec, context.device)

    def __call__(self, step: int, k: int, batch: Batch) -> Batch:
        images, _ = self.inner(step, k, batch)
        with torch.no_grad(), self.autocast():
            return self.synthesize.relabelled(images, self.synthesize.rng)
