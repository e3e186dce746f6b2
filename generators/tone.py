"""``generator.tone``: each image's colours mixed by its own latent, before the generator's last tanh.

    x_i  ->  x_i + M(z_i) x_i + b(z_i)        (per pixel; M(z) a C x C matrix, b(z) a C-vector, both linear in z)

x_i is image i's pre-activation output (C channels), z_i the latent it was made from (a conditional generator's
class-coded one). M and b start at zero, so a fresh generator makes exactly the images it made without this
(and no random number is drawn to build it); the generator's terms then train them with the rest.

Why: a convolutional generator paints colour through its last conv layer, which is shared by every image: it can
vary shapes with the latent, but all its images come out in one or two colour pairs. A teacher whose classes do
not depend on colour never asks for more, and a student that only saw those colours learns features that do not
fire on others. On ``fmnist-rgb64`` (a random canvas and ink colour per image) the generator without this painted
every image blue and yellow, and its students stayed at 14-19% (teachers 81-87%); with it the images come in a
canvas and ink colour each, as the training images do, the feature priors' spread between images
(``class_image_stats``) ends nearer its reference (0.76 / 0.83 against 0.97 / 0.96 at the last step, seed 0), and
the students reach 63% and 20% (3 seeds each; docs/changelog.md, 2026-12-07, afternoon). With a grey teacher
(C = 1) it is a per-image contrast and brightness: the generators used it to invert images, and the recipe check's
four grey pairs lost 0.9-10 points, so the default preset's ``tone = "auto"`` leaves grey teachers without it. Not
measured on natural images. A per-image affine map of the channels from the latent is StyleGAN's idea (Karras et
al., CVPR 2019: styles modulate the features per image) reduced to the output's colours; the placement before tanh
keeps the pixels bounded (``generator.output = "pixels"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LatentTone(nn.Module):
    """``forward(x, z)``: ``x + M(z) x + b(z)`` per pixel, M and b linear in ``z``; zero (the identity) at start."""

    def __init__(self, latent_dim: int, channels: int):
        super().__init__()
        self.channels = channels
        outputs = channels * channels + channels  # M's entries, then b's
        # zeros, not nn.Linear's random start: a fresh generator is the one without tone, and its other layers'
        # random starts stay those of the generator without it (no number is drawn here)
        self.weight = nn.Parameter(torch.zeros(outputs, latent_dim))
        self.bias = nn.Parameter(torch.zeros(outputs))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        c = self.channels
        codes = F.linear(z, self.weight, self.bias)
        mix, shift = codes[:, : c * c].view(-1, c, c), codes[:, c * c :].view(-1, c, 1, 1)
        return x + torch.einsum("nij,njhw->nihw", mix.to(x.dtype), x) + shift.to(x.dtype)
