"""Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

loss = T^2 * KL(softmax(t / T) || softmax(s / T)), summed over classes and averaged over the batch
(``F.kl_div(..., reduction="batchmean")``). With T=1 this is exactly the official DAFL ``kdloss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datafree.distill.base import DistillLoss, register_loss
from datafree.features import NetOutput


@register_loss("kd")
class KD(DistillLoss):
    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"kd temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        t = self.temperature
        log_p_student = F.log_softmax(student.logits.float() / t, dim=1)
        p_teacher = F.softmax(teacher.logits.float() / t, dim=1)
        return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * t * t
