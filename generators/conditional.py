"""Class-balanced generation: any generator, its latent code scaled by a learned per-class embedding.

DAFL's generator is unconditional and its class balance rests on the entropy loss alone; on Fashion-MNIST
with the feature-statistics prior it was seen to make three T-shirts for every pullover, and the student
learnt pullovers worst. Here the i-th image of every batch is assigned class ``i mod num_classes``
(:func:`balanced_labels`), the latent is multiplied by that class's embedding (as conditional GANs do),
and the one-hot loss targets the assigned class instead of the teacher's argmax: every batch is balanced
by construction. The embeddings start at N(1, embed_std^2) per coordinate: with 1.0 the classes start apart (at
0.1 a ResNet-20 teacher's run still had cross-entropy 3.5 against the asked classes after
60 generator steps, against 2.4 at 1.0 with the default preset: runs/bench_teachers.py). ``forward(z)`` keeps the plain-generator signature, so export and notebooks need nothing new;
``forward(z, labels)`` makes other class counts (the ``quota`` callback: datafree/callbacks/quota.py); ``labels`` may also be
soft targets (n, K), whose latent is scaled by the blend of the embeddings, ``t @ E`` (the ``blend`` callback:
datafree/callbacks/blend.py).
"""

from __future__ import annotations

import torch
from torch import nn


def balanced_labels(n: int, num_classes: int, device: torch.device | str | None = None, start: int = 0) -> torch.Tensor:
    """start, start + 1, ..., K-1, 0, 1, ...: the class assigned to each position of a batch of ``n`` (``start``: where
    the window begins when K > n, datafree/callbacks/rotation.py)."""
    return (torch.arange(n, device=device) + start) % num_classes


class ClassConditional(nn.Module):
    def __init__(self, generator: nn.Module, num_classes: int, latent_dim: int, embed_std: float = 1.0):
        super().__init__()
        self.generator, self.num_classes = generator, num_classes
        self.embed = nn.Embedding(num_classes, latent_dim)
        nn.init.normal_(self.embed.weight, mean=1.0, std=embed_std)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Image i made for class ``labels[i]`` (default: i mod K, balanced), or for the blend ``labels[i] @ E``."""
        if labels is None:
            labels = balanced_labels(z.shape[0], self.num_classes, z.device)
        if labels.is_floating_point():
            return self.generator(z * (labels.to(self.embed.weight.dtype) @ self.embed.weight))
        return self.generator(z * self.embed(labels))
