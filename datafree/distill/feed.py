"""Parallel FEED (Park & Kwak, "Feature-level Ensemble for Knowledge Distillation", 2019): one student feature
map, one non-linear transform per teacher, each transformed map matched to its own teacher's map.

With teachers m = 1..M (the members of a ``[teacher] kind = "ensemble"`` source; one teacher works too), the
student's map F_s at ``student_layers[0]`` and each member's map F_m at ``teacher_layers[m]``:

    L_FEED = (1/M) sum_m mean_batch || phi(T_m(F_s)) - phi(F_m) ||_1,     phi(F) = F / ||F||_2 (per sample)

T_m = conv3x3(C_s -> C_m) -> BatchNorm -> ReLU -> conv1x1(C_m -> C_m), owned by the loss (trained with the
student, checkpointed in ``*_with_losses.safetensors``, not part of the exported student: no cost at test time).
When the spatial sizes differ, the larger map is average-pooled to the smaller one first. The KD term on the
ensemble's averaged logits is the recipe's ``[[distill]] kd`` entry beside this one.

Paper vs here: the extracted abstract lost the equations; the prose says "non-linear transformation" layers per
teacher and feature-map matching. The normalized L1 distance follows Factor Transfer (Kim et al., 2018), from
which FEED's transforms descend; the transform is a conv-BN-ReLU-conv block of teacher width (FT's translator
is three convolutions). Default layers: the student's last ``default_taps`` entry and each member's last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datafree.distill.base import DistillLoss, declared_taps, register_loss
from datafree.distill.hint import match_spatial, require_conv_map
from datafree.nets.features import NetOutput


def unit(x: torch.Tensor) -> torch.Tensor:
    """Each sample's map divided by its L2 norm (over C, H, W)."""
    flat = x.flatten(1)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-8)


def transform(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 1))  # fmt: skip


@register_loss("feed")
class FEED(DistillLoss):
    """One transform per teacher member; the trainer fills the layers (one per member) unless the recipe does."""

    benchmark = {"weight": 1.0, "params": {}}  # runs/compare_losses.py (one teacher: one transform)

    def __init__(self, student_layers: list[str] | None = None, teacher_layers: list[str] | None = None):
        super().__init__()
        if student_layers is not None and len(student_layers) != 1:
            raise ValueError(f"feed: student_layers takes ONE layer (its map feeds every transform), got {student_layers}")
        if teacher_layers is not None and not teacher_layers:
            raise ValueError("feed: teacher_layers must name one layer per teacher member")
        self.student_layers, self.teacher_layers = student_layers, teacher_layers
        self.transforms = nn.ModuleList()

    @classmethod
    def default_layers(cls, params: dict, student_net: nn.Module, members: list) -> dict:
        """One student map (its last default tap) and one map of EVERY member (each one's last default tap)."""
        if not params.get("student_layers"):
            params["student_layers"] = declared_taps(student_net, "feed", "student_layers")[-1:]
        if not params.get("teacher_layers"):
            params["teacher_layers"] = [m.prefix + declared_taps(m.net, "feed", "teacher_layers")[-1] for m in members]
        return params

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        if not self.student_layers or not self.teacher_layers:
            raise ValueError("feed: student_layers and teacher_layers are not set (the trainer fills them from the "
                             "networks' default_taps; set them in the recipe's params otherwise)")  # fmt: skip
        student = self.student_layers[0]
        require_conv_map("feed", "student", student, student_shapes)
        for layer in self.teacher_layers:
            require_conv_map("feed", "teacher", layer, teacher_shapes)
        self.transforms = nn.ModuleList(transform(student_shapes[student][0], teacher_shapes[t][0])
                                        for t in self.teacher_layers)  # fmt: skip

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        if len(self.transforms) != len(self.teacher_layers or ()):
            raise RuntimeError("feed: call setup(student_shapes, teacher_shapes) before the first forward")
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            f_s = student.features[self.student_layers[0]].float()
            total = f_s.new_zeros(())
            for layer, t in zip(self.teacher_layers, self.transforms):
                mapped, target = match_spatial(t(f_s), teacher.features[layer].float())
                total = total + (unit(mapped) - unit(target)).abs().sum(dim=1).mean()
        return total / len(self.transforms)
