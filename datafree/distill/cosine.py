"""Cosine-similarity KD, as used instead of the KL divergence by SPEQ (Boo et al., "Stochastic Precision
Ensemble: Self-Knowledge Distillation for Quantized Deep Neural Networks", AAAI 2021).

    loss = mean over the batch of ( 1 - <p_s, p_t> / (||p_s||_2 ||p_t||_2) )

with p = softmax(z / T) of the logits z (default ``on="softmax"``, T = 1: SPEQ compares the teacher's and
the student's soft labels), or p = z the raw logits (``on="logits"``; T is then unused). No T^2 factor: the
loss is bounded in [0, 2] (in [0, 1] on probabilities) whatever T is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datafree.distill.base import DistillLoss, register_loss
from datafree.nets.features import NetOutput


@register_loss("cosine")
class CosineKD(DistillLoss):
    benchmark = {"weight": 1.0, "params": {}}  # runs/compare_losses.py

    def __init__(self, on: str = "softmax", temperature: float = 1.0):
        super().__init__()
        if on not in ("softmax", "logits"):
            raise ValueError(f"cosine: on must be 'softmax' or 'logits', got {on!r}")
        if temperature <= 0:
            raise ValueError(f"cosine temperature must be > 0, got {temperature}")
        self.on, self.temperature = on, temperature

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            s, t = student.logits.float(), teacher.logits.float()
            if self.on == "softmax":
                s, t = F.softmax(s / self.temperature, dim=1), F.softmax(t / self.temperature, dim=1)
            return (1 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()
