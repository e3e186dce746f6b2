"""Zagoruyko & Komodakis 2017, "Paying More Attention to Attention" (ICLR 2017), activation-based AT.

For a conv map F (B, C, H, W) the attention map is ``Q = mean_c |F_c|^p`` (p = 2), flattened to (B, HW) and
L2-normalized per sample: ``a = Q / ||Q||_2``. For every (student, teacher) layer pair

    loss = sum over pairs of  beta/2 * 1/(B*H*W) * sum_b ||a_s(b) - a_t(b)||_2^2

i.e. ``beta/2 * ((a_s - a_t)^2).mean()`` over batch and positions: the normalization of the authors' code,
for which the paper's beta = 1000 was tuned (the paper writes the p-norm of the difference; the code, used
for its results, the mean of the squared difference). Channel counts may differ (the map averages them out).
If the spatial sizes differ, the larger *feature map* is adaptive-average-pooled to the smaller (H, W) before
the attention map is taken.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from datafree.distill.base import register_loss
from datafree.distill.hint import PairedFeatureLoss, match_spatial
from datafree.nets.features import NetOutput


def attention_map(f: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W): channel mean of |f|^p, L2-normalized per sample."""
    return F.normalize(rearrange(f.abs().pow(p).mean(dim=1), "b h w -> b (h w)"), dim=1)


@register_loss("at")
class AT(PairedFeatureLoss):
    benchmark = {"weight": 1.0, "params": {}}  # runs/compare_losses.py; beta = 1000 is inside the loss

    def __init__(
        self,
        student_layers: list[str] | None = None,
        teacher_layers: list[str] | None = None,
        p: float = 2.0,
        beta: float = 1000.0,
    ):
        super().__init__(student_layers, teacher_layers)
        if p <= 0:
            raise ValueError(f"at: p must be > 0, got {p}")
        self.p = p
        self.beta = beta

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        self.require_maps(student_shapes, teacher_shapes)

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            loss = student.logits.new_zeros((), dtype=torch.float32)
            for s, t in self.pairs():
                f_s, f_t = match_spatial(student.features[s].float(), teacher.features[t].float())
                diff = attention_map(f_s, self.p) - attention_map(f_t, self.p)
                loss = loss + self.beta / 2 * diff.pow(2).mean()
        return loss
