"""Romero et al. 2015, "FitNets: Hints for Thin Deep Nets" (ICLR 2015).

A learned regressor ``r`` maps each guided student layer to the shape of its teacher hint layer, and

    loss = sum over layer pairs of  mean over all elements of (r(F_s) - F_t)^2

i.e. ``F.mse_loss(r(F_s), F_t)`` with ``reduction="mean"`` (averaged over batch, channels and positions,
as mdistiller/RepDistiller do) instead of the paper's ``1/2 ||u_h - r(v_g)||^2`` summed over elements, so the
loss scale does not grow with the feature size.

The regressor is a ``k x k`` convolution with bias (``kernel_size`` 1 or 3, padding ``k // 2`` so it keeps
the spatial size) from student channels to teacher channels for conv maps
(B, C, H, W), or an ``nn.Linear`` for vectors (B, D). The paper sizes a "valid" convolution so its output
matches the teacher's spatial size; here the larger map is adaptive-average-pooled to the smaller one's
(H, W) first (student before the regressor, teacher directly), and the regressor keeps the size. The
regressor is linear (the paper optionally puts the hint layer's nonlinearity after it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datafree.distill.base import DistillLoss, register_loss
from datafree.nets.features import NetOutput


def match_spatial(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool whichever (B, C, H, W) map is larger to the common size (min H, min W)."""
    size = (min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1]))
    if tuple(s.shape[-2:]) != size:
        s = F.adaptive_avg_pool2d(s, size)
    if tuple(t.shape[-2:]) != size:
        t = F.adaptive_avg_pool2d(t, size)
    return s, t


def check_layer_lists(name: str, student_layers: list[str] | None, teacher_layers: list[str] | None) -> None:
    """Pairwise feature losses: both lists given (or both left to the trainer), and of equal length."""
    if (student_layers is None) != (teacher_layers is None):
        raise ValueError(f"{name}: give both student_layers and teacher_layers, or neither (trainer defaults)")
    if student_layers is not None and len(student_layers) != len(teacher_layers):
        raise ValueError(
            f"{name}: student_layers {list(student_layers)} and teacher_layers {list(teacher_layers)} "
            "must have the same length (one teacher layer per student layer)"
        )
    if student_layers is not None and not student_layers:
        raise ValueError(f"{name}: student_layers/teacher_layers must not be empty")


def require_layers(name: str, student_layers: list[str] | None, teacher_layers: list[str] | None) -> None:
    if student_layers is None or teacher_layers is None:
        raise ValueError(
            f"{name}: student_layers and teacher_layers are not set; pass them to create_loss({name!r}, "
            "student_layers=[...], teacher_layers=[...]) or let the trainer fill in its default taps before setup()"
        )


class PairedFeatureLoss(DistillLoss):
    """Shared plumbing for losses on (student layer i, teacher layer i) pairs: taps follow the layer lists."""

    uses_default_taps = True

    def __init__(self, student_layers: list[str] | None = None, teacher_layers: list[str] | None = None):
        super().__init__()
        check_layer_lists(type(self).__name__, student_layers, teacher_layers)
        self.student_layers = None if student_layers is None else list(student_layers)
        self.teacher_layers = None if teacher_layers is None else list(teacher_layers)

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        self.pairs()  # the layer lists must be set by now

    def pairs(self) -> list[tuple[str, str]]:
        require_layers(getattr(self, "registry_name", type(self).__name__), self.student_layers, self.teacher_layers)
        check_layer_lists(type(self).__name__, self.student_layers, self.teacher_layers)
        return list(zip(self.student_layers, self.teacher_layers))

    def require_maps(self, student_shapes: dict, teacher_shapes: dict) -> None:
        """Reject taps that are not conv maps: per-sample shapes must be (C, H, W)."""
        for s, t in self.pairs():
            for side, layer, shapes in (("student", s, student_shapes), ("teacher", t, teacher_shapes)):
                require_conv_map(self.registry_name, side, layer, shapes)


@register_loss("hint")
class Hint(PairedFeatureLoss):
    """FitNets hint loss with one learned regressor per (student, teacher) layer pair, built in ``setup``."""
    benchmark = {"weight": 1.0, "params": {}}  # runs/compare_losses.py


    def __init__(
        self,
        student_layers: list[str] | None = None,
        teacher_layers: list[str] | None = None,
        kernel_size: int = 1,
    ):
        super().__init__(student_layers, teacher_layers)
        if kernel_size not in (1, 3):
            raise ValueError(f"hint kernel_size must be 1 or 3, got {kernel_size}")
        self.kernel_size = kernel_size
        self.regressors = nn.ModuleList()

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        regressors = []
        for s, t in self.pairs():
            if s not in student_shapes or t not in teacher_shapes:
                raise ValueError(f"hint: missing shape for student layer {s!r} or teacher layer {t!r}")
            s_shape, t_shape = tuple(student_shapes[s]), tuple(teacher_shapes[t])
            if len(s_shape) == 3 and len(t_shape) == 3:
                k = self.kernel_size
                regressors.append(nn.Conv2d(s_shape[0], t_shape[0], k, padding=k // 2))
            elif len(s_shape) == 1 and len(t_shape) == 1:
                regressors.append(nn.Linear(s_shape[0], t_shape[0]))
            else:
                raise ValueError(
                    f"hint: student layer {s!r} has per-sample shape {s_shape} and teacher layer {t!r} has {t_shape}; "
                    "both must be conv maps (C, H, W) or both vectors (D,). Tap layers of the same kind."
                )
        self.regressors = nn.ModuleList(regressors)

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        pairs = self.pairs()
        if len(self.regressors) != len(pairs):
            raise RuntimeError("hint: call setup(student_shapes, teacher_shapes) before the first forward")
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            loss = student.logits.new_zeros((), dtype=torch.float32)
            for (s, t), regressor in zip(pairs, self.regressors):
                f_s, f_t = student.features[s].float(), teacher.features[t].float()
                if f_s.dim() == 4:
                    f_s, f_t = match_spatial(f_s, f_t)
                loss = loss + F.mse_loss(regressor(f_s), f_t)
        return loss


def require_conv_map(loss: str, side: str, layer: str, shapes: dict[str, tuple[int, ...]]) -> None:
    """Feature losses on conv maps reject a missing layer or a non-(C, H, W) tap before training starts."""
    if layer not in shapes:
        raise ValueError(f"{loss}: no shape given for {side} layer {layer!r}")
    if len(shapes[layer]) != 3:
        raise ValueError(
            f"{loss}: {side} layer {layer!r} has per-sample shape {tuple(shapes[layer])}, "
            "but this loss needs conv maps (C, H, W), i.e. conv feature maps; tap a convolutional layer"
        )
