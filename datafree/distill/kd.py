"""Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

loss = T^2 * KL(softmax(t / T) || softmax(s / T)), summed over classes and averaged over the batch
(``F.kl_div(..., reduction="batchmean")``). With T=1 this is exactly the official DAFL ``kdloss``.

``class_balanced=True`` averages per class instead of per image: each class the teacher sees in the
batch (its argmax) gets the same total weight, so a generator that makes 3 T-shirts per pullover does not
teach the student 3x more about T-shirts. With a balanced batch it equals the plain loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datafree.distill.base import DistillLoss, register_loss
from datafree.nets.features import NetOutput


def class_balanced_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-image weights, mean 1, that give every class present in ``labels`` the same total weight."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    present = (counts > 0).sum()
    return labels.numel() / (present * counts[labels])


@register_loss("kd")
class KD(DistillLoss):
    def __init__(self, temperature: float = 1.0, class_balanced: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"kd temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.class_balanced = class_balanced

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        t = self.temperature
        log_p_student = F.log_softmax(student.logits.float() / t, dim=1)
        p_teacher = F.softmax(teacher.logits.float() / t, dim=1)
        if not self.class_balanced:
            return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * t * t
        per_image = F.kl_div(log_p_student, p_teacher, reduction="none").sum(dim=1)
        weights = class_balanced_weights(teacher.logits.argmax(dim=1), teacher.logits.shape[1])
        return (weights * per_image).mean() * t * t
