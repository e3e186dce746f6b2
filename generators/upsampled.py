"""``generator.upsample = f``: the generator makes its images at 1/f of the teacher's input size, and a fixed
bilinear enlargement brings them to that size before the teacher sees them.

Why: at 64 px the generators learn slowly. On ``resnet20_s2:resnet8_narrow_s2@fmnist-rgb64`` (10 minutes, one
core) the one-hot term of the generator at full size was still at 3 nats after 200 steps, where at 32 px it falls
under 2 within 60 (docs/changelog.md, 2026-12-06, night and late night). DAFL's generator at 32 px, enlarged twice,
ran 1.3-1.7 times as many steps in the same time as DAFL's at 64 px, and with the colour augmentation its student
reached 28.2% against 25.0% (3 seeds each; docs/changelog.md, 2026-12-07, morning); without the colour, on that
pair and on a strided MobileNet pair, it was above the staged generator at full size at every seed (3 each;
2026-12-07, noon), so ``arch = "auto"`` (the default preset's) uses it above 32 px, with f = 2
(generators/staged.py). Still far from the teachers (81-87%).
Coarse first is the idea of progressive GANs (Karras et al., ICLR 2018) and of DeepInversion's multi-resolution
setting for ImageNet (Yin et al., CVPR 2020: the first iterations at half resolution). Deviation: here the whole
run stays at the coarse size; nothing grows to full resolution later.

The enlargement is linear and per channel, so bounded pixels (``generator.output = "pixels"``) stay in the
teacher's valid input range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def coarse_size(image_size: int, factor: int) -> int:
    """The size a generator enlarged ``factor`` times is built for; ValueError where ``factor`` cannot serve."""
    size = image_size // factor if isinstance(factor, int) and factor >= 1 else 0
    if size * factor != image_size or (factor > 1 and size % 4):
        raise ValueError(f"generator.upsample = {factor} must divide the image size {image_size} into a multiple of 4 "
                         f"(the generators upsample x4 from image_size / 4); e.g. 2 at 64 px, or 1 (off)")  # fmt: skip
    return size


class Upsampled(nn.Module):
    """``inner``'s images enlarged ``factor`` times (bilinear): ``forward`` takes what ``inner`` takes."""

    def __init__(self, inner: nn.Module, factor: int):
        super().__init__()
        if not isinstance(factor, int) or factor < 2:
            raise ValueError(f"the enlargement is a whole factor >= 2, got {factor!r}")
        self.inner, self.factor = inner, factor

    def forward(self, *args, **kwargs) -> torch.Tensor:
        small = self.inner(*args, **kwargs)
        return F.interpolate(small, scale_factor=self.factor, mode="bilinear", align_corners=False)
