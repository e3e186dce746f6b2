"""Tung & Mori 2019, "Similarity-Preserving Knowledge Distillation" (ICCV 2019).

For each tapped layer, flatten the activations of a batch to Q (B, D) (any per-sample shape; channel and
spatial sizes may differ between student and teacher), form the batch similarity ``G = Q Q^T`` (B x B) and
L2-normalize each row: ``G~[i] = G[i] / ||G[i]||_2``. Then

    loss = sum over layer pairs of  1/B^2 * ||G~_s - G~_t||_F^2

(the paper's beta/b^2 with beta left to the objective's loss weight).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from datafree.distill.base import register_loss
from datafree.distill.hint import PairedFeatureLoss
from datafree.nets.features import NetOutput


def similarity(f: torch.Tensor) -> torch.Tensor:
    q = rearrange(f, "b ... -> b (...)")
    return F.normalize(q @ q.t(), dim=1)


@register_loss("sp")
class SP(PairedFeatureLoss):
    benchmark = {"weight": 3000.0, "params": {}}  # runs/compare_losses.py

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            loss = student.logits.new_zeros((), dtype=torch.float32)
            for s, t in self.pairs():
                f_s, f_t = student.features[s].float(), teacher.features[t].float()
                b = f_s.shape[0]
                loss = loss + (similarity(f_s) - similarity(f_t)).pow(2).sum() / b**2
        return loss
