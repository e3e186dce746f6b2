"""Weight clipping: after every student step, conv and linear weights are clamped to [-c, c].

    [[student.wrap]]
    name = "clip"
    params = {max_abs = 1.0, lr_scale = 0.5}

w <- clamp(w, -c, c) after each optimizer step (the projection BinaryConnect applies to its real-valued
weights, and a building block of quantization-aware training); the clipped weights form their own
parameter group, with ``lr_scale`` x the student's LR and, if given, their own weight decay.
"""

from __future__ import annotations

from torch import nn

from datafree.wrappers.base import StudentWrapper, register_student_wrapper


def clipped_weights(net: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@register_student_wrapper("clip")
class ClipWeights(StudentWrapper):
    def __init__(self, max_abs: float = 1.0, lr_scale: float = 1.0, weight_decay: float | None = None):
        if max_abs <= 0:
            raise ValueError(f"clip: max_abs must be > 0, got {max_abs}")
        self.max_abs, self.lr_scale, self.weight_decay = max_abs, lr_scale, weight_decay

    def param_groups(self, net: nn.Module) -> list[dict]:
        group = {"name": "clip", "params": clipped_weights(net), "lr_scale": self.lr_scale}
        return [group if self.weight_decay is None else {**group, "weight_decay": self.weight_decay}]

    def after_step(self, net: nn.Module, progress: float) -> None:
        for weight in clipped_weights(net):
            weight.clamp_(-self.max_abs, self.max_abs)
