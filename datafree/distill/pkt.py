"""Passalis & Tefas 2018, "Learning Deep Representations with Probabilistic Knowledge Transfer" (ECCV 2018).

On embeddings x_1..x_B (the logits by default, or one named feature layer flattened per sample; student and
teacher dimensions may differ), with the cosine-similarity kernel K(a, b) = 1/2 (a.b / (||a|| ||b||) + 1)
(in [0, 1]), the conditional probabilities over the other samples of the batch

    p_{j|i} = K(x_i, x_j) / sum_{k != i} K(x_i, x_k)        for j != i

are formed for the teacher (p) and the student (q), and

    loss = 1/B * sum_i sum_{j != i} p_{j|i} * log((p_{j|i} + eps) / (q_{j|i} + eps)),   eps = 1e-7

i.e. KL(teacher || student) of each anchor's neighbour distribution, averaged over the B anchors (the paper
sums over anchors; the mean keeps the scale independent of the batch size). Needs B >= 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datafree.distill.base import DistillLoss, register_loss
from datafree.distill.rkd import check_single_layers, pick_embedding
from datafree.nets.features import NetOutput


def conditional_probabilities(x: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, B) row-stochastic p_{j|i} with a zero diagonal (cosine kernel)."""
    z = F.normalize(x, dim=1)
    kernel = (z @ z.t() + 1) / 2
    kernel = kernel * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))
    return kernel / kernel.sum(dim=1, keepdim=True).clamp_min(1e-12)


@register_loss("pkt")
class PKT(DistillLoss):
    benchmark = {"weight": 30000.0, "params": {}}  # runs/compare_losses.py

    uses_default_taps = False

    def __init__(self, student_layer: str | None = None, teacher_layer: str | None = None, eps: float = 1e-7):
        super().__init__()
        check_single_layers("pkt", student_layer, teacher_layer)
        self.student_layer, self.teacher_layer, self.eps = student_layer, teacher_layer, eps
        self.student_layers = None if student_layer is None else [student_layer]
        self.teacher_layers = None if teacher_layer is None else [teacher_layer]

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            q = conditional_probabilities(pick_embedding(student, self.student_layer))
            p = conditional_probabilities(pick_embedding(teacher, self.teacher_layer))
            if len(p) < 2:
                raise ValueError("pkt needs a batch of at least 2 samples")
            kl = p * torch.log((p + self.eps) / (q + self.eps))  # diagonal: p = 0 contributes 0
            return kl.sum(dim=1).mean()
