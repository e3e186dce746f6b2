"""Liu et al. 2019, "Knowledge Representing: Efficient, Sparse Representation of Prior Knowledge for
Knowledge Distillation" (KR): deep knowledge aggregation + sparse recoding penalty.

The paper's equations (Eqs. 3-4, 7-10) are lost in the text we have; the formulas below implement its prose
and are our reconstruction.

(a) Deep knowledge aggregation (Eq. 9, "std-weighted transport penalty"). Student layer i (map S_i,
    (B, C_s, H, W)) is matched against a group of k neighbouring teacher layers T_i1..T_ik. Each teacher map
    is resized to (H, W) (adaptive average pooling when it is larger, bilinear interpolation when smaller) and
    sent through its own bias-free 1x1 connector C_ij to C_s channels: P_ij = C_ij(resize(T_ij)) (connectors
    start as the identity when the channel counts match). The aggregate is A_i = sum_j w_ij P_ij with
    w_i = softmax(alpha_i) (learnable, alpha_i = 0 at start: a plain average). With n(x) = x / ||x||_2
    per sample (flattened; it keeps the learnable connectors from shrinking the target to zero):

        D_i     = mean over b of ||n(S_i) - n(A_i)||^2                       (match the aggregate)
        r_ij    = n(S_i) - n(P_ij),   c_ij = mean over b of ||r_ij||^2     (cost of transporting T_ij)
        pi_ij   = sigma_ij / sum_j' sigma_ij',   sigma_ij = std of the entries of r_ij (population std, no gradient)
        L_agg   = sum_i [ D_i + lambda_T * sum_j pi_ij c_ij ]

    sigma is the paper's "measures function ... to penalize more on the layer with higher accumulation error,
    and the standard deviation is employed here"; lambda_T (``transport_weight``) is its lambda.

(b) Sparse recoding penalty (Eqs. 3-4), on the tapped student activations S_i (the contract hands losses
    features, not parameters; :class:`SparseRecodingPenalty` also works on a parameter tensor directly).
    For a tensor x of N entries and the learnable threshold tau > 0 (initialized at mean |x|):

        u_i = |x_i| / tau,     psi(u) = 1 - (1 - min(u, 1))^2   (= 2u - u^2 below the threshold, 1 above)
        R(x) = 1/N * sum_i psi(u_i)

    psi is a scale-free, minimax-concave surrogate of the L0 "norm" (R ~ fraction of active entries), the
    "more strict sparse constraint" than L1/L2 of the paper's Fig. 2. Its gradient is
    dR/dx_i = 2 sign(x_i) (1 - u_i) / (N tau) below the threshold and 0 above: an inactive entry is pulled
    to zero hardest at zero (2/tau, so it stays at exactly zero unless its task gradient exceeds that: low
    gradients of inactive neurons are filtered) and the pull fades smoothly to zero at the threshold, while
    dominant entries above tau are not shrunk at all, so their task gradients pass unpenalized (enhanced
    relative to inactive ones; no over-regularization, unlike L1/L2 which shrink every entry).
    The threshold (stored as log tau) is trained by gradient descent on the calibration term
    c(tau) = mean(|x|)/tau + log tau (x without gradient), the negative log-likelihood of a Laplace scale,
    whose minimum is tau = mean |x|: the paper's initialization, so tau starts at its optimum and tracks the
    magnitude distribution as training sparsifies it. (R itself would drive tau to infinity, so tau is
    detached inside R.) c contributes gradient only: the returned value is R + c - sg(c), numerically R.

    loss = L_agg + lambda_S * sum_i R(S_i)      (``sparse_weight`` = lambda_S)

The paper optimizes (a) and (b) alternately with two optimizers; here they form one loss, and the connectors,
alpha and tau are trained with the student (put ``loss.parameters()`` in their own param group to use the
paper's separate learning rate).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from datafree.distill.base import DistillLoss, register_loss
from datafree.distill.hint import require_conv_map
from datafree.nets.features import NetOutput


class SparseRecodingPenalty(nn.Module):
    """R(x) = mean_i psi(|x_i| / tau), psi(u) = 1 - (1 - min(u, 1))^2, with a learnable threshold tau.

    tau is initialized at mean |x| of the first tensor seen (or of ``from_tensor``'s argument) and trained
    through the calibration term mean(|x|)/tau + log tau, whose value is not added to the result.
    """

    def __init__(self, threshold: float | None = None):
        super().__init__()
        self.log_threshold = nn.Parameter(torch.zeros(()))
        self.register_buffer("initialized", torch.tensor(False))
        if threshold is not None:
            self.reset_threshold(threshold)

    @classmethod
    def from_tensor(cls, x: torch.Tensor) -> "SparseRecodingPenalty":
        """A penalty for a parameter tensor, with tau initialized at its mean magnitude."""
        return cls(float(x.detach().abs().float().mean()))

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    @torch.no_grad()
    def reset_threshold(self, value: float | torch.Tensor) -> None:
        value = torch.as_tensor(value, dtype=torch.float32).clamp_min(1e-12)
        self.log_threshold.copy_(value.log())
        self.initialized.fill_(True)

    @torch.no_grad()
    def _init_from(self, x: torch.Tensor) -> None:
        mean = x.abs().mean()
        if dist.is_available() and dist.is_initialized():  # same tau on every rank
            dist.all_reduce(mean)
            mean /= dist.get_world_size()
        self.reset_threshold(mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if not bool(self.initialized):
            self._init_from(x.detach())
        tau = self.log_threshold.exp()
        u = (x.abs() / tau.detach()).clamp(max=1.0)
        penalty = (1 - (1 - u).pow(2)).mean()
        calibration = x.detach().abs().mean() / tau + self.log_threshold
        return penalty + (calibration - calibration.detach())


def threshold_groups(loss: nn.Module) -> list[dict]:
    """The learnable thresholds as their own group without weight decay: decay would drag tau (hence the
    calibration) towards 1 whatever the features say."""
    taus = [m.log_threshold for m in loss.modules() if isinstance(m, SparseRecodingPenalty)]
    return [{"name": "kr_thresholds", "params": taus, "weight_decay": 0.0}] if taus else []


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Adaptive average pooling down to ``size``, bilinear interpolation up to it."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(rearrange(x, "b ... -> b (...)"), dim=1)


@register_loss("kr")
class KR(DistillLoss):
    """Knowledge Representing: each student layer matches an aggregate of k neighbouring teacher layers.

    ``teacher_layers`` is split into ``len(student_layers)`` consecutive groups of k = len(teacher) / len(student)
    layers (e.g. student ``[layer1, layer2]`` with teacher ``[layer1.0, layer1.1, layer1.2, layer2.0, ...]``).
    """
    benchmark = {"weight": 1.0, "params": {}}  # runs/compare_losses.py

    uses_default_taps = True

    def __init__(
        self,
        student_layers: list[str] | None = None,
        teacher_layers: list[str] | None = None,
        k: int | None = None,
        transport_weight: float = 0.1,
        sparse_weight: float = 0.01,
    ):
        super().__init__()
        if (student_layers is None) != (teacher_layers is None):
            raise ValueError("kr: give both student_layers and teacher_layers, or neither (trainer defaults)")
        if k is not None and k < 1:
            raise ValueError(f"kr: k must be >= 1, got {k}")
        self.student_layers = None if student_layers is None else list(student_layers)
        self.teacher_layers = None if teacher_layers is None else list(teacher_layers)
        self.k = k
        self.transport_weight = transport_weight
        self.sparse_weight = sparse_weight
        if student_layers is not None:
            self.groups()
        self.connectors = nn.ModuleList()  # [i][j]: 1x1 conv teacher layer j of group i -> student i channels
        self.alpha = nn.ParameterList()  # [i]: (k,) aggregation logits
        self.sparse = nn.ModuleList()  # [i]: SparseRecodingPenalty of student layer i

    def groups(self) -> list[tuple[str, list[str]]]:
        if self.student_layers is None or self.teacher_layers is None:
            raise ValueError(
                "kr: student_layers and teacher_layers are not set; pass them to create_loss('kr', ...) or let the "
                "trainer fill in its default taps before setup()"
            )
        n_s, n_t = len(self.student_layers), len(self.teacher_layers)
        if n_s == 0 or n_t % n_s != 0:
            raise ValueError(
                f"kr: {n_t} teacher layers cannot be split into {n_s} equal groups (one per student layer); "
                "give k teacher layers per student layer"
            )
        k = n_t // n_s
        if self.k is not None and self.k != k:
            raise ValueError(f"kr: k={self.k} but {n_t} teacher layers for {n_s} student layers means k={k}")
        return [(s, self.teacher_layers[i * k : (i + 1) * k]) for i, s in enumerate(self.student_layers)]

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        connectors, alpha, sparse = [], [], []
        for s, ts in self.groups():
            for side, layer, shapes in [("student", s, student_shapes)] + [("teacher", t, teacher_shapes) for t in ts]:
                require_conv_map("kr", side, layer, shapes)
            c_s = student_shapes[s][0]
            group = nn.ModuleList()
            for t in ts:
                conv = nn.Conv2d(teacher_shapes[t][0], c_s, kernel_size=1, bias=False)
                if teacher_shapes[t][0] == c_s:
                    nn.init.dirac_(conv.weight)
                group.append(conv)
            connectors.append(group)
            alpha.append(nn.Parameter(torch.zeros(len(ts))))
            sparse.append(SparseRecodingPenalty())
        self.connectors = nn.ModuleList(connectors)
        self.alpha = nn.ParameterList(alpha)
        self.sparse = nn.ModuleList(sparse)

    def aggregation_loss(self, f_s: torch.Tensor, f_ts: list[torch.Tensor], i: int) -> torch.Tensor:
        size = tuple(f_s.shape[-2:])
        projected = [conv(resize_to(f_t, size)) for conv, f_t in zip(self.connectors[i], f_ts)]
        weights = torch.softmax(self.alpha[i], dim=0)
        aggregate = sum(w * p for w, p in zip(weights, projected))
        s = unit(f_s)
        match = (s - unit(aggregate)).pow(2).sum(dim=1).mean()
        residuals = [s - unit(p) for p in projected]
        costs = torch.stack([r.pow(2).sum(dim=1).mean() for r in residuals])
        sigma = torch.stack([r.detach().std(correction=0) for r in residuals])
        pi = sigma / sigma.sum().clamp_min(1e-12)
        return match + self.transport_weight * (pi * costs).sum()

    def param_groups(self) -> list[dict]:
        return threshold_groups(self)

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        groups = self.groups()
        if len(self.connectors) != len(groups):
            raise RuntimeError("kr: call setup(student_shapes, teacher_shapes) before the first forward")
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            loss = student.logits.new_zeros((), dtype=torch.float32)
            for i, (s, ts) in enumerate(groups):
                f_s = student.features[s].float()
                loss = loss + self.aggregation_loss(f_s, [teacher.features[t].float() for t in ts], i)
                if self.sparse_weight:
                    loss = loss + self.sparse_weight * self.sparse[i](f_s)
        return loss


@register_loss("sparse_recoding")
class SparseRecoding(DistillLoss):
    """KR's sparse recoding penalty alone, on the tapped student activations: sum over layers of R(S_i).

    ``teacher_layers`` is accepted for interface uniformity with the other feature losses and ignored (no teacher
    taps). One learnable threshold per layer, built in ``setup`` and initialized from the first batch.
    """

    uses_default_taps = True

    def __init__(self, student_layers: list[str] | None = None, teacher_layers: list[str] | None = None):
        super().__init__()
        self.student_layers = None if student_layers is None else list(student_layers)
        self.teacher_layers = None  # accepted for a uniform signature; the penalty reads only the student
        self.penalties = nn.ModuleList()

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        if not self.student_layers:
            raise ValueError(
                "sparse_recoding: student_layers is not set; pass it to create_loss('sparse_recoding', "
                "student_layers=[...]) or let the trainer fill in its default taps before setup()"
            )
        self.penalties = nn.ModuleList(SparseRecodingPenalty() for _ in self.student_layers)

    def param_groups(self) -> list[dict]:
        return threshold_groups(self)

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:
        if not self.student_layers or len(self.penalties) != len(self.student_layers):
            raise RuntimeError("sparse_recoding: call setup(student_shapes, teacher_shapes) before the first forward")
        with torch.autocast(device_type=student.logits.device.type, enabled=False):
            loss = student.logits.new_zeros((), dtype=torch.float32)
            for layer, penalty in zip(self.student_layers, self.penalties):
                loss = loss + penalty(student.features[layer].float())
        return loss
