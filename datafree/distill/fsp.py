"""Yim et al. 2017, "A Gift from Knowledge Distillation: Fast Optimization, Network Minimization and
Transfer Learning" (CVPR 2017): the Flow of Solution Procedure (FSP) matrix.

The tapped layers of each network form a chain l_0, l_1, ..., l_n (e.g. the outputs of consecutive stages,
so pair i is the input and output of stage i, as in the paper). For each consecutive pair with maps
F1 (B, C1, H, W) and F2 (B, C2, H, W)

    G[b, i, j] = sum_{h,w} F1[b, i, h, w] * F2[b, j, h, w] / (H * W)        (C1 x C2 per sample)

The paper needs equal spatial sizes within a pair; here the larger map of the pair is
adaptive-average-pooled to the smaller (H, W). With n pairs and the paper's equal weights lambda_i = 1/n:

    loss = 1/n * sum_i  mean over the batch of ||G_s^i - G_t^i||_F^2

G_s and G_t must have the same shape, i.e. each student layer must have the teacher counterpart's channel
count. If they differ, ``setup`` raises, unless ``connectors=True``: then a bias-free 1x1 convolution
(student channels -> teacher channels, owned by this loss and trained with the student) is applied to each
mismatched student layer before the FSP matrices are formed (an extension; the paper uses equal widths).
"""

from __future__ import annotations

import torch
from torch import nn

from datafree.distill.base import register_loss
from datafree.distill.hint import PairedFeatureLoss, match_spatial
from datafree.nets.features import NetOutput


def fsp_matrix(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """(B, C1, H, W) x (B, C2, H', W') -> (B, C1, C2), pooling the larger map to the common size first."""
    f1, f2 = match_spatial(f1, f2)
    h, w = f1.shape[-2:]
    return torch.einsum("bihw,bjhw->bij", f1, f2) / (h * w)


@register_loss("fsp")
class FSP(PairedFeatureLoss):
    benchmark = {"weight": 50.0, "params": {"connectors": True}}  # runs/compare_losses.py; LeNet-5 and LeNet-5-half differ in channels

    def __init__(
        self,
        student_layers: list[str] | None = None,
        teacher_layers: list[str] | None = None,
        connectors: bool = False,
    ):
        super().__init__(student_layers, teacher_layers)
        if student_layers is not None and len(student_layers) < 2:
            raise ValueError(f"fsp needs at least 2 layers per network (it pairs consecutive ones): {student_layers}")
        self.connectors = connectors
        self.connector = nn.ModuleList()  # one entry per student layer (nn.Identity where channels already match)

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        self.require_maps(student_shapes, teacher_shapes)
        pairs = self.pairs()
        if len(pairs) < 2:
            raise ValueError(f"fsp needs at least 2 layers per network (it pairs consecutive ones), got {len(pairs)}")
        modules: list[nn.Module] = []
        for s, t in pairs:
            c_s, c_t = student_shapes[s][0], teacher_shapes[t][0]
            if c_s == c_t:
                modules.append(nn.Identity())
            elif self.connectors:
                modules.append(nn.Conv2d(c_s, c_t, kernel_size=1, bias=False))
            else:
                raise ValueError(
                    f"fsp: student layer {s!r} has {c_s} channels (shape {tuple(student_shapes[s])}) but teacher layer "
                    f"{t!r} has {c_t} (shape {tuple(teacher_shapes[t])}), so their FSP matrices differ in shape. Tap "
                    "layers with equal channel counts, or pass connectors=True to learn 1x1 student->teacher "
                    "connectors."
                )
        self.connector = nn.ModuleList(modules)

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        pairs = self.pairs()
        if len(self.connector) != len(pairs):
            raise RuntimeError("fsp: call setup(student_shapes, teacher_shapes) before the first forward")
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            f_s = [conn(student.features[s].float()) for conn, (s, _) in zip(self.connector, pairs)]
            f_t = [teacher.features[t].float() for _, t in pairs]
            n = len(pairs) - 1
            loss = student.logits.new_zeros((), dtype=torch.float32)
            for i in range(n):
                g_s, g_t = fsp_matrix(f_s[i], f_s[i + 1]), fsp_matrix(f_t[i], f_t[i + 1])
                loss = loss + (g_s - g_t).pow(2).sum(dim=(1, 2)).mean() / n
        return loss
