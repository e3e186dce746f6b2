"""Huang & Wang 2017, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer" (NST).

Each channel's spatial map is a "neuron selectivity pattern": for a conv map F (B, C, H, W) take, per
sample, the C vectors ``f_i = F[b, i].flatten() / ||F[b, i].flatten()||_2`` (length HW, L2-normalized over
positions). Teacher patterns {t_i}_{i<C_t} and student patterns {s_j}_{j<C_s} are treated as two samples
and compared with the squared Maximum Mean Discrepancy

    MMD^2(b) = 1/C_t^2 sum_{i,i'} k(t_i, t_i') + 1/C_s^2 sum_{j,j'} k(s_j, s_j') - 2/(C_t C_s) sum_{i,j} k(t_i, s_j)

    loss = sum over layer pairs of  mean over the batch of MMD^2(b)

with kernel ``linear``: k = x.y; ``poly`` (default, the paper's best): k = (x.y + c)^d with d = 2, c = 0;
``gaussian``: k = exp(-||x - y||^2 / (2 sigma^2)) with sigma = 1 by default (patterns are unit vectors, so
||x - y||^2 lies in [0, 4] and sigma = 1 keeps the kernel informative over that range). The paper's lambda/2
weight is left to the objective's loss weight. Channel counts may differ (MMD compares sets); if the spatial
sizes differ the larger map is adaptive-average-pooled to the smaller (H, W) first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from datafree.distill.base import register_loss
from datafree.distill.hint import PairedFeatureLoss, match_spatial
from datafree.nets.features import NetOutput

KERNELS = ("linear", "poly", "gaussian")


@register_loss("nst")
class NST(PairedFeatureLoss):
    benchmark = {"weight": 50.0, "params": {"kernel": "poly"}}  # runs/compare_losses.py; weight in the range RepDistiller uses for LeNet-sized features

    def __init__(
        self,
        student_layers: list[str] | None = None,
        teacher_layers: list[str] | None = None,
        kernel: str = "poly",
        degree: int = 2,
        coef: float = 0.0,
        sigma: float = 1.0,
    ):
        super().__init__(student_layers, teacher_layers)
        if kernel not in KERNELS:
            raise ValueError(f"nst: kernel must be one of {KERNELS}, got {kernel!r}")
        if sigma <= 0:
            raise ValueError(f"nst: sigma must be > 0, got {sigma}")
        self.kernel, self.degree, self.coef, self.sigma = kernel, degree, coef, sigma

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        self.require_maps(student_shapes, teacher_shapes)

    def gram(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Kernel matrix (B, N, M) between unit-vector sets x (B, N, L) and y (B, M, L)."""
        dot = x @ y.transpose(1, 2)
        if self.kernel == "linear":
            return dot
        if self.kernel == "poly":
            return (dot + self.coef).pow(self.degree)
        sq_dist = (2 - 2 * dot).clamp_min(0)  # ||x - y||^2 for unit vectors
        return torch.exp(-sq_dist / (2 * self.sigma**2))

    def mmd2(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        s = F.normalize(rearrange(f_s, "b c h w -> b c (h w)"), dim=2)
        t = F.normalize(rearrange(f_t, "b c h w -> b c (h w)"), dim=2)
        per_sample = (
            self.gram(t, t).mean(dim=(1, 2)) + self.gram(s, s).mean(dim=(1, 2)) - 2 * self.gram(t, s).mean(dim=(1, 2))
        )
        return per_sample.mean()

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            loss = student.logits.new_zeros((), dtype=torch.float32)
            for s, t in self.pairs():
                f_s, f_t = match_spatial(student.features[s].float(), teacher.features[t].float())
                loss = loss + self.mmd2(f_s, f_t)
        return loss
