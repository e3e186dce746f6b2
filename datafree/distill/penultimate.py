"""The teacher's penultimate features, distilled into the student's through a learned linear map (a data-free
variant of the last-layer hint of FitNets, Romero et al. 2015, and of SRRL's feature term, Yang et al. ICLR 2021).

For each image i, the student's penultimate features f_s (the input of its last ``nn.Linear``) are mapped by a
learned ``nn.Linear`` r to the teacher's width, and

    loss = mean_i ( 1 - pearson(r(f_s_i), f_t_i) ),   pearson(a, b) = <a - mean(a), b - mean(b)> / (|a - mean(a)| |b - mean(b)|)

the correlation taken over the feature dimensions of one image (means over its D_t entries). With several
teachers (an ensemble source) there is one map per member and the loss is the mean over members.

Why not FitNets' mean squared error: that is in the teacher's units, whose scale differs across architectures
by an order of magnitude (the zoo's per-dimension variance of the penultimate features: MobileNet 0.23, VGG 0.57,
ResNet-20 1.97, LeNet-5 3.6), so one weight could not serve every teacher. The correlation is in [0, 2] whatever
the teacher, and a copy of the teacher with its penultimate features scaled by any c > 0 gives the same loss.
It asks for the teacher's pattern over its features, not its magnitude, which KD on the logits already carries.

Why at all: KD gives the student ten numbers per image; the teacher's last features carry D_t (64-256 in the zoo),
more of what separates classes whose logits the student can match on the generator's images and still part from
the teacher on real ones (the zoo's Shirt class, docs/changelog.md). The map r is trained with the student and dropped
at deployment: the student's own classifier is left as KD trains it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datafree.distill.base import DistillLoss, register_loss
from datafree.nets.features import NetOutput, penultimate_tap


def per_image_pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Correlation of each row of ``a`` with the same row of ``b`` over the feature dimension, (N,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return F.cosine_similarity(a, b, dim=1, eps=eps)


@register_loss("penultimate")
class PenultimateFeatures(DistillLoss):
    """1 - per-image correlation of the student's mapped penultimate features with the teacher's."""

    benchmark = {"weight": 1.0, "params": {}}  # runs/compare_losses.py

    def __init__(self, student_layers: list[str] | None = None, teacher_layers: list[str] | None = None):
        super().__init__()
        if student_layers is not None and len(student_layers) != 1:
            raise ValueError(f"penultimate: student_layers names ONE layer (the student's penultimate features), "
                             f"got {list(student_layers)}")  # fmt: skip
        if teacher_layers is not None and not teacher_layers:
            raise ValueError("penultimate: teacher_layers must not be empty (leave it out for every member's "
                             "penultimate features)")  # fmt: skip
        self.student_layers = None if student_layers is None else list(student_layers)
        self.teacher_layers = None if teacher_layers is None else list(teacher_layers)
        self.maps = nn.ModuleList()

    @classmethod
    def default_layers(cls, params: dict, student_net: nn.Module, members: list) -> dict:
        """The student's penultimate tap and every member's (declared ``feature_layer`` or last Linear's input)."""
        if params.get("student_layers") is None:
            params["student_layers"] = [penultimate_tap(student_net)]
        if params.get("teacher_layers") is None:
            params["teacher_layers"] = [m.prefix + penultimate_tap(m.net) for m in members]
        return params

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        if not self.student_layers or not self.teacher_layers:
            raise ValueError("penultimate: student_layers and teacher_layers are not set (the trainer fills them with "
                             "the networks' penultimate taps; set them in the recipe's params otherwise)")  # fmt: skip
        width = _width("student", self.student_layers[0], student_shapes)
        self.maps = nn.ModuleList(nn.Linear(width, _width("teacher", t, teacher_shapes)) for t in self.teacher_layers)

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        if len(self.maps) != len(self.teacher_layers or ()):
            raise RuntimeError("penultimate: call setup(student_shapes, teacher_shapes) before the first forward")
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            f_s = student.features[self.student_layers[0]].float().flatten(1)
            losses = [(1 - per_image_pearson(r(f_s), teacher.features[t].float().flatten(1))).mean()
                      for t, r in zip(self.teacher_layers, self.maps)]  # fmt: skip
        return torch.stack(losses).mean()


def _width(side: str, layer: str, shapes: dict[str, tuple[int, ...]]) -> int:
    """The number of features a tap gives per image (a vector, or a map flattened)."""
    if layer not in shapes:
        raise ValueError(f"penultimate: no shape given for {side} layer {layer!r}")
    return int(torch.Size(shapes[layer]).numel())
