"""The student's objective: a weighted, scheduled sum of registered distillation losses.

``StudentWithLosses`` holds the student network and every loss (with any parameters the losses own)
in ONE module, so ``accelerator.prepare`` wraps them together for DDP, one optimizer trains them and
one state_dict checkpoints them. The trainer calls it and never looks at which losses are inside.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from datafree.distill.base import DistillLoss
from datafree.nets.features import FeatureTaps, NetOutput


def scheduled_weight(weight: float, schedule: str, progress: float, end_weight: float = 0.0,
                     milestones: list[float] | tuple[float, ...] = (), gamma: float = 0.1) -> float:  # fmt: skip
    """Loss coefficient at ``progress`` in [0, 1] of training (e.g. the decaying KD coefficient of QDNN KD)."""
    if schedule == "constant":
        return weight
    if schedule == "linear":
        return weight + (end_weight - weight) * min(max(progress, 0.0), 1.0)
    if schedule == "step":
        return weight * gamma ** sum(progress >= m for m in milestones)
    raise ValueError(f"unknown weight schedule {schedule!r}; use constant, linear or step")


class StudentWithLosses(nn.Module):
    """Student + its distillation losses; ``forward(x, teacher_out, progress)`` -> (total, terms, student_out)."""

    def __init__(self, student: nn.Module, losses: list[DistillLoss], weights: list[dict], penalties: list = ()):
        super().__init__()
        if len(losses) != len(weights):
            raise ValueError("one weight schedule per loss")
        self.net = student
        self.losses = nn.ModuleList(losses)
        self.weights = weights  # plain dicts: weight, schedule, end_weight, milestones, gamma
        self.names: list[str] = []
        for index, loss in enumerate(losses):
            name = "s_" + getattr(loss, "registry_name", type(loss).__name__.lower())
            self.names.append(name if name not in self.names else f"{name}{index}")
        self.student_taps = sorted({tap for loss in losses for tap in loss.student_taps})
        self.teacher_taps = sorted({tap for loss in losses for tap in loss.teacher_taps})
        self._taps = FeatureTaps(self.net, self.student_taps)
        self.penalties = list(penalties)  # objects with .penalty(net, progress) -> scalar | None (student wrappers)

    def remove_hooks(self) -> None:
        """Take the feature hooks off the student network (a user's module goes back without them)."""
        self._taps.remove()

    def param_groups(self, extra: list[dict] = ()) -> list[dict]:
        """One optimizer group for every parameter no loss or ``extra`` group claims, then the claimed groups."""
        claimed = [*(g for loss in self.losses for g in loss.param_groups()), *extra]
        taken = {id(p) for g in claimed for p in g["params"]}
        rest = [p for p in self.parameters() if id(p) not in taken]
        return [{"name": "student", "params": rest}, *claimed]

    def forward(self, x: torch.Tensor, teacher: NetOutput | None = None, progress: float = 0.0):
        student_out = self._taps.run(x)
        if teacher is None:  # plain inference (evaluation)
            return student_out.logits
        terms: dict[str, torch.Tensor] = {}
        total = student_out.logits.new_zeros((), dtype=torch.float32)
        for name, loss, w in zip(self.names, self.losses, self.weights):
            value = loss(student_out, teacher)
            coefficient = scheduled_weight(progress=progress, **w)
            terms[name] = value.detach()
            if coefficient != 0.0:
                total = total + coefficient * value
        for owner in self.penalties:
            value = owner.penalty(self.net, progress)
            if value is not None:
                terms[f"s_{owner.registry_name}_penalty"] = value.detach()
                total = total + value
        return total, terms, student_out


def check_finite(terms: dict[str, torch.Tensor]) -> list[str]:
    """Names of terms whose value is NaN or infinite (one host sync; call only when logging/guarding)."""
    return [name for name, value in terms.items() if not math.isfinite(float(value))]
