"""DAFL's generator objective (Chen et al., ICCV 2019, Eq. 3-6): the frozen teacher as a fixed discriminator.

For a batch of n synthetic images with teacher logits y_T^i and penultimate features f_T^i:

- one-hot loss     L_oh = (1/n) sum_i CE(y_T^i, argmax_j y_T^i[j])          (confident predictions)
- activation loss  L_a  = -(1/n) sum_i ||f_T^i||_1                           (paper, ``activation="l1"``)
                          -(1/(n*d)) sum_i ||f_T^i||_1 = -mean|f|             (official code, ``"mean"``)
- info. entropy    L_ie = -H(p_bar) = sum_j p_bar_j log p_bar_j,  p_bar = (1/n) sum_i softmax(y_T^i)
                          with natural log (paper, ``entropy_log="ln"``) or log10 (official, ``"log10"``)

Total: oh * L_oh + a * L_a + ie * L_ie. The official code's conventions are the defaults because they
produced the published numbers: "mean" divides the paper's activation loss by the feature size d
(e.g. 120 for LeNet-5, 512 for ResNet), and log10 divides the entropy by ln(10) ~ 2.303. So the paper's
weights (a=0.1, ie=5) mean different strengths under the two conventions.

With several processes, p_bar is taken over the global batch (all ranks) when ``global_entropy`` is on:
the other ranks' sums enter as constants, and the local part's gradient is scaled by the world size so
that after DDP averages gradients, N processes x batch B give exactly the gradient of one batch N x B.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from datafree.feature_stats import channel_moments


def one_hot_loss(logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against the teacher's own argmax (or the classes a conditional generator was asked for)."""
    return F.cross_entropy(logits, logits.detach().argmax(dim=1) if targets is None else targets)


def activation_loss(features: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Negative feature magnitude: real images excite the teacher's filters more than noise does."""
    flat = features.flatten(1)
    if reduction == "mean":
        return -flat.abs().mean()
    if reduction == "l1":
        return -flat.abs().sum(dim=1).mean()
    raise ValueError(f"activation reduction must be 'mean' or 'l1', got {reduction!r}")


def entropy_loss(mean_probs: torch.Tensor, log: str = "log10") -> torch.Tensor:
    """Negative entropy of the batch-mean class distribution: minimizing it balances the classes."""
    log_p = torch.log(mean_probs.clamp_min(1e-12))
    if log == "log10":
        log_p = log_p / math.log(10.0)
    elif log != "ln":
        raise ValueError(f"entropy log must be 'log10' or 'ln', got {log!r}")
    return (mean_probs * log_p).sum()


def adversarial_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Negative teacher-student disagreement: -(1/n) sum_i ||softmax(s_i) - softmax(t_i)||_1, in [-2, 0].

    The adversarial idea of DFAD (Fang et al. 2019): the generator also seeks images where the student is
    still wrong, which makes each synthetic batch more informative. DFAD measures the disagreement on raw
    logits; with DAFL's large generator learning rate that term is unbounded and swamps the other three
    (the teacher's logits blow up), so datafree compares probabilities, which keeps it bounded.
    """
    gap = student_logits.float().softmax(dim=1) - teacher_logits.float().softmax(dim=1)
    return -gap.abs().sum(dim=1).mean()


def total_variation_loss(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels: DeepInversion's smoothness prior (Yin et al. 2020).

    Natural images are piecewise smooth; without it a bounded generator fills the frame with saturated
    high-frequency texture that excites the teacher but looks like no real image.
    """
    x = images.float()
    return (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()


def moment_loss(images: torch.Tensor) -> torch.Tensor:
    """Squared distance of each channel's batch mean/std from 0/1, in the teacher's normalized input space.

    Images normalized with the dataset's mean/std have channel mean 0 and std 1, so this asks the batch to
    have the dataset's brightness and contrast: the same knowledge DAFL's output BatchNorm imposes exactly,
    but as a soft prior that keeps bounded (``generator.output = "pixels"``) images inside the valid range.
    On Fashion-MNIST it turns saturated full-frame textures into bright shapes on a dark background.
    """
    flat = images.float().transpose(0, 1).flatten(1)  # (channels, batch * pixels)
    return (flat.mean(dim=1).pow(2) + (flat.std(dim=1) - 1).pow(2)).sum()


def feature_stats_loss(features: dict[str, torch.Tensor],
                       reference: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:  # fmt: skip
    """DeepInversion's feature prior: sum over layers of ||mu(x) - mu_ref||_2 + ||var(x) - var_ref||_2.

    mu/var are per-channel batch statistics of the teacher's features at each reference layer (over batch
    and space, biased variance); mu_ref/var_ref what the teacher saw on its training data
    (:mod:`datafree.feature_stats`). Matching them makes the batch look like the training set to the teacher.
    """
    total = None
    for tap, (ref_mean, ref_var) in reference.items():
        mean, var = channel_moments(features[tap])
        term = torch.linalg.vector_norm(mean - ref_mean) + torch.linalg.vector_norm(var - ref_var)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("feature_stats_loss needs at least one reference layer")
    return total


def class_feature_stats_loss(features: dict[str, torch.Tensor], reference: dict[str, tuple[torch.Tensor, torch.Tensor]],
                             labels: torch.Tensor, min_count: int = 2) -> torch.Tensor:  # fmt: skip
    """The feature prior per class: images labelled k must have the statistics of class k's training images.

    For each layer, sum over classes k of (n_k / n) * (||mu_k(x) - mu_ref[k]||_2 + ||var_k(x) - var_ref[k]||_2),
    mu_k/var_k over the n_k images labelled k (and space); classes with fewer than ``min_count`` images in
    the batch are skipped (n counts the rest). The pooled prior only asks that the MIXTURE look right; a
    generator can meet it with too few pullovers and too many shirt-like ones, this one cannot.
    """
    total = None
    for tap, (ref_mean, ref_var) in reference.items():
        value = features[tap].float()
        one_hot = F.one_hot(labels, ref_mean.shape[0]).to(value.dtype)  # (N, K)
        images = one_hot.sum(dim=0)  # n_k
        positions = value[0, 0].numel()
        count = (images * positions).clamp_min(1)[:, None]
        mean = torch.einsum("nk,nc...->kc", one_hot, value) / count
        var = (torch.einsum("nk,nc...->kc", one_hot, value * value) / count - mean * mean).clamp_min(0)
        per_class = torch.linalg.vector_norm(mean - ref_mean, dim=1) + torch.linalg.vector_norm(var - ref_var, dim=1)
        weight = torch.where(images >= min_count, images, torch.zeros_like(images))
        term = (weight * per_class).sum() / weight.sum().clamp_min(1)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("class_feature_stats_loss needs at least one reference layer")
    return total


class DAFLObjective(nn.Module):
    """Weighted sum of the three DAFL terms; returns (total, {term: value}) for logging."""

    def __init__(self, oh: float = 1.0, a: float = 0.1, ie: float = 5.0, entropy_log: str = "log10",
                 activation: str = "mean",
                 reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None, world_size: int = 1):  # fmt: skip
        super().__init__()
        self.oh, self.a, self.ie = oh, a, ie
        self.entropy_log, self.activation = entropy_log, activation
        self.reduce_sum, self.world_size = reduce_sum, world_size

    def batch_mean_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """p_bar over the local batch, or over the global batch when a cross-process sum is given."""
        probs = F.softmax(logits.float(), dim=1)
        if self.reduce_sum is None or self.world_size == 1:
            return probs.mean(dim=0)
        local_sum = probs.sum(dim=0)
        global_sum = self.reduce_sum(local_sum.detach())
        # value = global sum; gradient = world_size x local (DDP divides it back by world_size)
        scaled = global_sum + self.world_size * (local_sum - local_sum.detach())
        return scaled / (logits.shape[0] * self.world_size)

    def forward(self, logits: torch.Tensor, features: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
        terms = {
            "g_onehot": one_hot_loss(logits.float(), targets),
            "g_activation": activation_loss(features.float(), self.activation),
            "g_entropy": entropy_loss(self.batch_mean_probs(logits), self.entropy_log),
        }
        total = self.oh * terms["g_onehot"] + self.a * terms["g_activation"] + self.ie * terms["g_entropy"]
        return total, terms
