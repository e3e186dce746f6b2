"""The bounded DFAD-style adversarial term: the generator also seeks images where the student still disagrees."""

from __future__ import annotations

import torch

from datafree.synthesis.base import SynthBatch, SynthesisTerm, register_synthesis_term


def adversarial_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Negative teacher-student disagreement: -(1/n) sum_i ||softmax(s_i) - softmax(t_i)||_1, in [-2, 0].

    The adversarial idea of DFAD (Fang et al. 2019): the generator also seeks images where the student is
    still wrong, which makes each synthetic batch more informative. DFAD measures the disagreement on raw
    logits; with DAFL's large generator learning rate that term is unbounded and swamps the other three
    (the teacher's logits blow up), so datafree compares probabilities, which keeps it bounded.
    """
    gap = student_logits.float().softmax(dim=1) - teacher_logits.float().softmax(dim=1)
    return -gap.abs().sum(dim=1).mean()


@register_synthesis_term("adversarial")
class Adversarial(SynthesisTerm):
    """Gradients reach the images through the student with frozen weights; the loop steps G before the student."""

    uses_student = True

    def forward(self, batch: SynthBatch) -> torch.Tensor:
        if batch.student_logits is None:
            raise RuntimeError("the adversarial term needs the student: the loop passes student_logits in the batch")
        return adversarial_loss(batch.student_logits(batch.images), batch.teacher.logits)
