"""The hard-label term of KD: cross-entropy against the teacher's argmax (no labels exist without data).

loss = CE(s, argmax_k t_k), averaged over the batch. Hinton et al. mix it with the soft term; with real data it
is the true label, here the teacher's decision. With a schedule the soft term's share can move to this one
during training, the finding of "Empirical Analysis of Knowledge Distillation Technique for Optimization of
Quantized Deep Neural Networks" (Shin et al., 2019) for low-bit students::

    [[distill]]
    name = "kd"
    weight = 1.0
    schedule = "linear"      # 1.0 -> 0.2 over training
    end_weight = 0.2

    [[distill]]
    name = "hard"
    weight = 0.0
    schedule = "linear"      # 0.0 -> 0.8
    end_weight = 0.8
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datafree.distill.base import DistillLoss, register_loss
from datafree.nets.features import NetOutput


@register_loss("hard")
class Hard(DistillLoss):
    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        return F.cross_entropy(student.logits.float(), teacher.logits.detach().argmax(dim=1))
