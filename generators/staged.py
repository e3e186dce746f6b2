"""A generator that grows by stages from a small seed map, for images larger than DAFL's generator can afford.

DAFL's generator projects the latent to ``width x (s/4)^2`` with one Linear layer: at 224 px, a 1000-d latent and
width 128 that layer alone has ~400M parameters. Like the generators of Fast / CMI / NAYER (Fang et al. 2021-22, Do
et al. 2024), this one projects the latent to a small seed map and doubles the resolution stage by stage while the
channels narrow::

    z -> Linear -> (c_0, s_0, s_0) -> BN -> [x2 upsample -> conv3x3 c_i -> c_{i+1} -> BN -> LeakyReLU(0.2)] x n
      -> conv3x3 -> channels -> [tone] -> tanh -> (as DAFL's: non-affine BN, or the teacher's pixels)

``s_0 = image_size / 2^n`` is the largest power-of-two division of the image size that stays at most 8 (8 for 32,
64 and 128 px, 7 for 28 and 224 px); the channels start at ``width * 2^(n-1)`` (at most ``max_width``, 256) and halve at
every stage down to ``width``. At 224 px with width 64: 2.9M parameters (13.9M with a 1000-d latent); width 16 (the default preset's): 1.7M
(``python -m generators.staged`` prints the table). The stages are not any one paper's: Fast's generator (the field's common
one) upsamples a fixed 2 times from ``s/4`` as DAFL's does; the seed map and the halving widths are ours.

``arch = "auto"`` (the default preset's) picks DAFL's generator up to 32 px, where it is measured; above, the
generator for half the size (DAFL's at 64 px, this one beyond), enlarged twice by ``generators/upsampled.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from generators.dafl import DAFLGenerator
from generators.registry import register_generator
from generators.tone import LatentTone
from generators.upsampled import Upsampled, coarse_size


def seed_size(image_size: int, most: int = 8) -> tuple[int, int]:
    """(s_0, n): the seed map's side and the number of doublings, s_0 * 2^n = image_size, s_0 <= ``most`` if it can be."""
    side, stages = image_size, 0
    while side > most and side % 2 == 0:
        side, stages = side // 2, stages + 1
    return side, stages


class StagedGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, image_size: int = 224, channels: int = 3, width: int = 64,
                 max_width: int = 256, bn_eps: float = 1e-5, output: str = "pixels", mean: tuple[float, ...] = (0.5,),
                 std: tuple[float, ...] = (0.5,), tone: bool = False):  # fmt: skip
        super().__init__()
        if output not in ("bn", "pixels"):
            raise ValueError(f"generator output must be 'bn' (DAFL's) or 'pixels', got {output!r}")
        self.latent_dim, self.image_size, self.channels, self.output = latent_dim, image_size, channels, output
        self.seed, stages = seed_size(image_size)
        widths = [min(max_width, width * 2 ** (stages - 1 - i)) for i in range(stages)] or [width]
        self.start = widths[0]
        self.project = nn.Linear(latent_dim, self.start * self.seed**2)
        self.bn0 = nn.BatchNorm2d(self.start)
        layers, c_in = [], self.start
        for c_out in widths[1:] + [width] if stages else []:
            layers += [nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out, eps=bn_eps), nn.LeakyReLU(0.2)]  # fmt: skip
            c_in = c_out
        self.stages = nn.Sequential(*layers)
        self.to_image = nn.Sequential(nn.Conv2d(c_in, channels, 3, padding=1))  # a Sequential: the saved keys stay
        self.tone = LatentTone(latent_dim, channels) if tone else None  # generators/tone.py
        self.out_bn = nn.BatchNorm2d(channels, affine=False) if output == "bn" else nn.Identity()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.bn0(self.project(z).view(z.shape[0], self.start, self.seed, self.seed))
        x = self.to_image(self.stages(x))
        x = torch.tanh(self.tone(x, z) if self.tone is not None else x)
        if self.output == "pixels":  # tanh -> pixels in [0, 1] -> the teacher's normalized space
            return ((x + 1) / 2 - self.mean) / self.std
        return self.out_bn(x)


@register_generator("staged")
def staged(latent_dim: int, image_size: int, channels: int, width: int = 64, bn_eps: float = 1e-5,
           output: str = "pixels", mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.5,),
           tone: bool = False) -> nn.Module:  # fmt: skip
    return StagedGenerator(latent_dim, image_size, channels, width=width, bn_eps=bn_eps, output=output, mean=mean, std=std,
                           tone=tone)  # fmt: skip


AUTO_DAFL_UP_TO = 32  # px: where DAFL's generator is measured (the zoo, the demo); above it, made at half size


@register_generator("auto")
def auto(latent_dim: int, image_size: int, channels: int, **kwargs) -> nn.Module:
    """DAFL's generator up to 32 px; above, the generator for half the size (DAFL's at 64 px, the staged one
    beyond), enlarged twice (``generator.arch = "auto"``, the default preset's).

    Why half size: at 64 px both generators learn too slowly for a CPU budget, and the one made at 32 px and
    enlarged (generators/upsampled.py) ran up to 1.8 times the steps and gave a better student at every seed on
    two 64-px pairs of different families, 3 seeds each (docs/changelog.md, 2026-12-07, noon). A size that
    ``generator.upsample = 2`` could not take (its half not a multiple of 4) gets the staged generator at full size."""
    if image_size <= AUTO_DAFL_UP_TO:
        return DAFLGenerator(latent_dim, image_size, channels, **kwargs)
    try:
        half = coarse_size(image_size, 2)  # the enlargement's own size rule
    except ValueError:
        return staged(latent_dim, image_size, channels, **kwargs)
    inner = DAFLGenerator if half <= AUTO_DAFL_UP_TO else staged
    return Upsampled(inner(latent_dim, half, channels, **kwargs), 2)


if __name__ == "__main__":
    for size in (28, 32, 64, 128, 224):
        for width in (16, 64):
            net = StagedGenerator(100, size, 3, width=width)
            print(f"{size:4d} px, width {width:3d}: seed {net.seed}x{net.seed}, {net.start} channels at the seed, "
                  f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters")
