"""SPEQ's distillation term (Boo et al., AAAI 2021): cosine similarity to the student's own stochastic-precision
forward, the targets of ``[teacher] kind = "speq"`` (datafree/teachers/speq.py).

    loss = mean over the batch of ( 1 - <p_s, p_self> / (||p_s||_2 ||p_self||_2) ),   p = softmax(z / T)

where z_s are the student's logits at its own activation precision and z_self the same weights' logits with
each layer's activation bits drawn at random (no gradient through them). The same formula as the ``cosine``
loss, read against the self-teacher instead of the real teacher; ``[[distill]] kd`` beside it keeps the real
teacher's term (SPEQ added to KD), ``speq`` alone is SPEQ without the real teacher's soft labels.
"""

from __future__ import annotations

import torch

from datafree.distill.base import register_loss
from datafree.distill.cosine import CosineKD
from datafree.nets.features import NetOutput

SELF_LOGITS = "self/logits"  # the feature the self-teacher source adds (datafree.teachers.speq)


@register_loss("speq")
class SPEQLoss(CosineKD):
    benchmark = None  # needs its own teacher kind: not in runs/compare_losses.py
    def __init__(self, on: str = "softmax", temperature: float = 1.0):
        super().__init__(on, temperature)
        self.teacher_layers = [SELF_LOGITS]

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        own = NetOutput(teacher.features[SELF_LOGITS], {})
        return super().forward(student, own)
