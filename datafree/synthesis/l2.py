"""DeepInversion's L2 image prior (Yin et al., CVPR 2020, Eq. 3: R_prior = a_tv R_TV + a_l2 R_l2)."""

from __future__ import annotations

import torch

from datafree.synthesis.base import SynthBatch, SynthesisTerm, register_synthesis_term


def l2_loss(images: torch.Tensor) -> torch.Tensor:
    """(1/n) sum_i ||x_i||_2 over the n images of the batch, in the teacher's normalized input space.

    DeepInversion penalizes the image norm so that pixels stay near the dataset mean (0 after normalization)
    unless the teacher needs them elsewhere; the paper writes ||x||_2, we average it over the batch so the
    weight does not depend on the batch size.
    """
    return torch.linalg.vector_norm(images.float().flatten(1), dim=1).mean()


@register_synthesis_term("l2")
class L2Prior(SynthesisTerm):
    def forward(self, batch: SynthBatch) -> torch.Tensor:
        return l2_loss(batch.images)
