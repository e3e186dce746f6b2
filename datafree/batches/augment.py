"""``augment``: the student's batches flipped / shifted / blurred / brightened or darkened / recoloured / mixed,
and relabelled by the teacher.

The step's own batch is transformed here; the batches the later pieces draw (``fresh``, ``pool``) are
transformed the same way by the synthesizer, which this piece hands its :class:`Augmenter`. The teacher labels
what the student actually sees, so an augmentation never needs to preserve the class (datafree/augment.py).
"""

from __future__ import annotations

import torch

from datafree.batches.base import BatchContext, SameBatch, register_batches
from datafree.batches.synthesizer import Augmenter, Batch
from datafree.config import ConfigError


@register_batches("augment")
class Augmented(SameBatch):
    stage = 1

    def __init__(self, flip: bool = False, shift: int = 0, mix: float = 0.0, blur: float = 0.0, brightness: float = 0.0,
                 colour: float = 0.0):
        if not isinstance(flip, bool) or not isinstance(shift, int) or shift < 0:
            raise ConfigError(f"[[batches]] \"augment\": flip is true/false and shift a number of pixels >= 0, got "
                              f"{flip!r}, {shift!r}")  # fmt: skip
        if not 0.0 <= mix <= 1.0:
            raise ConfigError(f"[[batches]] \"augment\": mix is a fraction in [0, 1] of each student batch, got {mix}")
        if not 0.0 <= blur <= 4.0:
            raise ConfigError(f"[[batches]] \"augment\": blur is the largest blur in pixels (0 = off, e.g. 1.0; at most "
                              f"4), got {blur}")  # fmt: skip
        if not isinstance(brightness, (int, float)) or not 0.0 <= brightness < 1.0:
            raise ConfigError(f"[[batches]] \"augment\": brightness is how far each image's pixel values are scaled, "
                              f"a factor in [1 - b, 1 + b] with b in [0, 1) (0 = off, e.g. 0.4), got {brightness!r}")  # fmt: skip
        if not isinstance(colour, (int, float)) or not 0.0 <= colour <= 1.0:
            raise ConfigError(f"[[batches]] \"augment\": colour is how strongly each image is recoloured, in [0, 1] "
                              f"(0 = off, 1 = any channel order and any range-keeping line per channel), "
                              f"got {colour!r}")  # fmt: skip
        if not (flip or shift or mix or blur or brightness or colour):
            raise ConfigError("[[batches]] \"augment\" with nothing on: set flip, shift, mix, blur, brightness or "
                              "colour, or drop the piece")  # fmt: skip
        self.flip, self.shift, self.mix, self.blur = flip, shift, float(mix), float(blur)
        self.brightness, self.colour = float(brightness), float(colour)

    def attach(self, inner: SameBatch | None, context: BatchContext) -> None:
        self.inner, self.synthesize, self.autocast = inner, context.synthesize, context.autocast
        self.synthesize.augmenter = Augmenter(self.flip, self.shift, context.spec, context.device, self.mix, self.blur,
                                              self.brightness, self.colour)  # fmt: skip

    def __call__(self, step: int, k: int, batch: Batch) -> Batch:
        images, _ = self.inner(step, k, batch)
        with torch.no_grad(), self.autocast():
            return self.synthesize.relabelled(images, self.synthesize.rng)
