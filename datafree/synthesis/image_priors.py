"""Priors on the images themselves (no teacher involved): pixel moments and total variation."""

from __future__ import annotations

import torch

from datafree.synthesis.base import SynthBatch, SynthesisTerm, register_synthesis_term


def image_total_variation(images: torch.Tensor) -> torch.Tensor:
    """Each image's mean absolute difference of vertical neighbours plus that of horizontal ones, shape (N,)."""
    x = images.float()
    return (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 2, 3)) + (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))


def total_variation_loss(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels: DeepInversion's smoothness prior (Yin et al. 2020).

    Natural images are piecewise smooth; without it a bounded generator fills the frame with saturated
    high-frequency texture that excites the teacher but looks like no real image.
    """
    return image_total_variation(images).mean()  # images of one size: the mean of per-image means is the batch's


def moment_loss(images: torch.Tensor) -> torch.Tensor:
    """Squared distance of each channel's batch mean/std from 0/1, in the teacher's normalized input space.

    Images normalized with the dataset's mean/std have channel mean 0 and std 1, so this asks the batch to
    have the dataset's brightness and contrast: the same knowledge DAFL's output BatchNorm imposes exactly,
    but as a soft prior that keeps bounded (``generator.output = "pixels"``) images inside the valid range.
    On Fashion-MNIST it turns saturated full-frame textures into bright shapes on a dark background.
    """
    flat = images.float().transpose(0, 1).flatten(1)  # (channels, batch * pixels)
    return (flat.mean(dim=1).pow(2) + (flat.std(dim=1) - 1).pow(2)).sum()


@register_synthesis_term("moment")
class Moment(SynthesisTerm):
    def forward(self, batch: SynthBatch) -> torch.Tensor:
        return moment_loss(batch.images)


@register_synthesis_term("tv")
class TotalVariation(SynthesisTerm):
    def forward(self, batch: SynthBatch) -> torch.Tensor:
        return total_variation_loss(batch.images)
