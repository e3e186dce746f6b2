"""Park et al. 2019, "Relational Knowledge Distillation" (CVPR 2019): distance + angle RKD.

On embeddings x_1..x_B (the logits by default, or one named feature layer flattened per sample; student and
teacher dimensions may differ) with l_delta the Huber loss with delta = 1 (``F.smooth_l1_loss``, beta = 1):

    distance:  psi_D(i, j) = ||x_i - x_j||_2 / mu,   mu = mean of ||x_i - x_j||_2 over the pairs i != j
               L_D = mean over ordered pairs i != j of l_delta(psi_D^s(i, j), psi_D^t(i, j))
    angle:     psi_A(i, j, k) = <e_ij, e_kj>,   e_ij = (x_i - x_j) / ||x_i - x_j||_2   (angle at vertex j)
               L_A = mean over triplets of distinct i, j, k of l_delta(psi_A^s, psi_A^t)

    loss = w_dist * L_D + w_angle * L_A          (paper: w_dist = 25, w_angle = 50)

The paper sums over pairs/triplets; the mean is used (the authors' code also averages) so the scale does not
grow with the batch. L_D needs B >= 2 and L_A needs B >= 3 (smaller batches contribute 0). The angle term is
O(B^3) in memory; it is computed from the Gram matrix, so it never builds a (B, B, D) tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from datafree.distill.base import DistillLoss, register_loss
from datafree.nets.features import NetOutput


def pick_embedding(out: NetOutput, layer: str | None) -> torch.Tensor:
    """The logits, or the named feature flattened to (B, D), in float32."""
    x = out.logits if layer is None else out.features[layer]
    return rearrange(x.float(), "b ... -> b (...)")


def check_single_layers(name: str, student_layer: str | None, teacher_layer: str | None) -> None:
    if (student_layer is None) != (teacher_layer is None):
        raise ValueError(f"{name}: give both student_layer and teacher_layer, or neither (then the logits are used)")


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, D) -> (B, B) Euclidean distances with an exact zero diagonal."""
    sq = x.pow(2).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp_min(eps).sqrt()
    return d * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def angle_cosines(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, D) -> (B, B, B) with [i, j, k] = cos of the angle at x_j between x_i and x_k (0 where degenerate)."""
    g = x @ x.t()
    diag = torch.diagonal(g)
    # <x_i - x_j, x_k - x_j> = G_ik - G_ij - G_jk + G_jj
    num = g[:, None, :] - g[:, :, None] - g[None, :, :] + diag[None, :, None]
    d = pairwise_distances(x, eps)
    den = (d[:, :, None] * d[None, :, :]).clamp_min(eps)
    return num / den


@register_loss("rkd")
class RKD(DistillLoss):
    benchmark = {"weight": 1.0, "params": {}}  # runs/compare_losses.py; w_dist = 25, w_angle = 50 are inside the loss

    uses_default_taps = False

    def __init__(
        self,
        w_dist: float = 25.0,
        w_angle: float = 50.0,
        student_layer: str | None = None,
        teacher_layer: str | None = None,
    ):
        super().__init__()
        check_single_layers("rkd", student_layer, teacher_layer)
        self.w_dist, self.w_angle = w_dist, w_angle
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        self.student_layers = None if student_layer is None else [student_layer]
        self.teacher_layers = None if teacher_layer is None else [teacher_layer]

    def distance_loss(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = len(s)
        if b < 2:
            return s.new_zeros(())
        off = ~torch.eye(b, dtype=torch.bool, device=s.device)
        d_s, d_t = pairwise_distances(s), pairwise_distances(t)
        d_s = d_s / d_s[off].mean().clamp_min(1e-12)
        d_t = d_t / d_t[off].mean().clamp_min(1e-12)
        return F.smooth_l1_loss(d_s[off], d_t[off])

    def angle_loss(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = len(s)
        if b < 3:
            return s.new_zeros(())
        idx = torch.arange(b, device=s.device)
        i, j, k = idx[:, None, None], idx[None, :, None], idx[None, None, :]
        distinct = (i != j) & (j != k) & (i != k)
        return F.smooth_l1_loss(angle_cosines(s)[distinct], angle_cosines(t)[distinct])

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            s = pick_embedding(student, self.student_layer)
            t = pick_embedding(teacher, self.teacher_layer)
            return self.w_dist * self.distance_loss(s, t) + self.w_angle * self.angle_loss(s, t)
