"""The DAFL generator (Chen et al., ICCV 2019, Sec. 4; official code's ``Generator``).

z -> Linear -> (width, s/4, s/4) -> BN -> x2 upsample -> conv3x3 width->width -> BN -> LeakyReLU(0.2)
  -> x2 upsample -> conv3x3 width->width/2 -> BN -> LeakyReLU(0.2) -> conv3x3 -> channels -> [tone] -> tanh
  -> BatchNorm without affine parameters.

The final non-affine BN makes each output channel zero-mean/unit-variance over the batch, i.e. the
generator emits images already in the teacher's normalized input space. ``bn_eps`` defaults to 0.8
because the official code writes ``nn.BatchNorm2d(C, 0.8)``, whose second positional argument is eps
(a slip for momentum); the paper's numbers were produced with it, so the recipe keeps it by default.

``[tone]`` (``tone=True``, not DAFL's) mixes each image's colours by its own latent: generators/tone.py.

``output="pixels"`` replaces the final BatchNorm by the teacher's own input mapping: tanh -> pixel values
in [0, 1] -> (p - mean) / std. The BN output is unbounded, and on Fashion-MNIST the generator was seen to
exploit that with sparse pixels far below black that no real image has; bounded pixels forbid it.
"""

from __future__ import annotations

import torch
from torch import nn

from generators.registry import register_generator
from generators.tone import LatentTone


class DAFLGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, image_size: int = 32, channels: int = 1, width: int = 128,
                 bn_eps: float = 0.8, output: str = "bn", mean: tuple[float, ...] = (0.5,),
                 std: tuple[float, ...] = (0.5,), tone: bool = False):  # fmt: skip
        super().__init__()
        if image_size % 4:
            raise ValueError(f"the DAFL generator upsamples x4, so image_size must be a multiple of 4 (got {image_size})")
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        self.init_size = image_size // 4
        self.width = width
        self.project = nn.Linear(latent_dim, width * self.init_size**2)
        self.bn0 = nn.BatchNorm2d(width)
        self.block1 = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width, eps=bn_eps),
            nn.LeakyReLU(0.2),
        )
        self.block2 = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width // 2, 3, padding=1),
            nn.BatchNorm2d(width // 2, eps=bn_eps),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width // 2, channels, 3, padding=1),
        )
        self.tone = LatentTone(latent_dim, channels) if tone else None  # generators/tone.py
        if output not in ("bn", "pixels"):
            raise ValueError(f"generator output must be 'bn' (DAFL) or 'pixels', got {output!r}")
        self.output = output
        self.out_bn = nn.BatchNorm2d(channels, affine=False) if output == "bn" else nn.Identity()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], self.width, self.init_size, self.init_size)
        x = self.block2(self.block1(self.bn0(x)))
        x = torch.tanh(self.tone(x, z) if self.tone is not None else x)
        if self.output == "pixels":  # tanh -> pixels in [0, 1] -> the teacher's normalized space
            return ((x + 1) / 2 - self.mean) / self.std
        return self.out_bn(x)


@register_generator("dafl")
def dafl(latent_dim: int, image_size: int, channels: int, width: int = 128, bn_eps: float = 0.8,
         output: str = "bn", mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.5,),
         tone: bool = False) -> nn.Module:  # fmt: skip
    return DAFLGenerator(latent_dim, image_size, channels, width=width, bn_eps=bn_eps, output=output, mean=mean, std=std,
                         tone=tone)  # fmt: skip
