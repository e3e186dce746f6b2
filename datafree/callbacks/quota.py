"""A per-class quota for the conditional generator: more of its batch for the classes the student has not learnt.

The conditional generator (generators/conditional.py) makes every class in equal numbers. ``ClassQuota`` moves a
share ``q`` (``[[callbacks]] quota``, ``share = q``) of every batch toward the classes where the student and the teacher disagree
most on the generator's own images::

    gap_k  <- m * gap_k + (1 - m) * mean_{i asked for k} || softmax(s(x_i)) - softmax(t(x_i)) ||_1     (m = 0.9)
    w_k     = (1 - q) / K + q * gap_k / sum_j gap_j
    label_i = the class whose cumulative share first exceeds (i + 1/2) / n          (i = 0 .. n-1)

The gap is the adversarial term's disagreement (datafree/synthesis/adversarial.py) measured with a no-grad
student forward (eval mode: running statistics untouched) on the generator's batch after the teacher's; the labels are a stratified allocation of the
shares (deterministic, sorted by class, computed on the device: no host sync), so every class keeps at least
``(1 - q) / K`` of the images and a run is still balanced at ``q = 0``. The quota acts on every batch the
synthesizer makes: the generator's (whose one-hot and per-class terms target these labels) and the student's
fresh ones. A per-class quota is one way to have the generator make every class the teacher knows; the dated
measurements are in docs/changelog.md.
"""

from __future__ import annotations

import torch

from datafree.callbacks.base import Callback, CallbackContext, LabelFn, per_class_field, register_callback
from datafree.config import ConfigError


def stratified_labels(shares: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` labels, class k taking ~``n * shares[k]`` positions (positions 0..n-1 by their midpoints)."""
    cumulative = shares.float().cumsum(0)
    midpoints = (torch.arange(n, device=shares.device, dtype=torch.float32) + 0.5) / n
    return torch.searchsorted(cumulative / cumulative[-1], midpoints, right=True).clamp(max=len(shares) - 1)


@register_callback("quota")
class ClassQuota(Callback):
    """The conditional generator's labels (``labels(n, device)``), re-weighted each step from the student's gap."""

    momentum = 0.9
    order = 60  # its labels replace the balanced (or rotating) ones; a blend is laid over them after

    def __init__(self, share: float = 0.5, num_classes: int = 0, order=None):
        if not 0.0 < share < 1.0:
            raise ConfigError(f"[[callbacks]] \"quota\": share is the share of each batch given by the student's gap: "
                              f"in (0, 1), got {share!r}")  # fmt: skip
        self.num_classes, self.quota = num_classes, float(share)
        self.order_of_classes = order  # a RotatingLabels (K > batch): shares stratified in its rotated class order
        self.gap: torch.Tensor | None = None  # per asked class, on the device (lazy: the device is the loop's)

    def check(self, context: CallbackContext) -> None:
        if not context.conditional:
            raise ConfigError("[[callbacks]] \"quota\" sets how many images of each class the generator is asked for, "
                              "which only a conditional generator takes; set generator.conditional = true or drop it")  # fmt: skip

    def attach(self, context: CallbackContext) -> None:
        self.num_classes, self.order_of_classes = context.num_classes, context.order

    def wrap_labels(self, labels: LabelFn | None, context: CallbackContext) -> LabelFn:
        return self.labels  # the classes by the student's gap, in place of the balanced ones

    def shares(self, device: torch.device | str) -> torch.Tensor:
        """Each class's share of a batch: uniform until the first gap is measured."""
        uniform = torch.full((self.num_classes,), 1.0 / self.num_classes, device=device)
        if self.gap is None or self.quota == 0:
            return uniform
        gap = self.gap.to(device)
        return (1 - self.quota) * uniform + self.quota * gap / gap.sum().clamp_min(1e-12)

    def labels(self, n: int, device: torch.device | str, rng: torch.Generator | None = None) -> torch.Tensor:
        order = self.order_of_classes
        start = order.start(n) if order is not None else None  # None while every class fits in a batch
        shares = self.shares(device)
        if start is not None:  # K > n: the batch is shared among its window's classes (datafree/callbacks/rotation.py) by gap
            window = (torch.arange(order.window(n), device=shares.device) + start) % self.num_classes
            return window[stratified_labels(shares[window], n)]
        return stratified_labels(shares, n)  # deterministic: rng unused

    @torch.no_grad()
    def on_synthesized(self, loop, step: int, batch) -> None:
        if batch.labels is None:
            return
        net = loop.student_net
        was_training = net.training
        net.eval()  # the student as it is evaluated, and its BatchNorm statistics left alone
        try:
            student = loop.frozen_student_logits(batch.images.detach()).float().softmax(dim=1)
        finally:
            net.train(was_training)
        gap = (student - batch.teacher.logits.detach().float().softmax(dim=1)).abs().sum(dim=1)
        asked = batch.classes()  # a blend (the blend callback) counts for its main class
        sums = torch.zeros(self.num_classes, device=gap.device).index_add_(0, asked, gap)
        counts = torch.bincount(asked, minlength=self.num_classes).float()
        if loop.accelerator.num_processes > 1:  # every rank draws the same shares
            sums, counts = loop.accelerator.reduce(torch.stack([sums, counts]), reduction="sum")
        measured = sums / counts.clamp_min(1)
        if self.gap is None:
            self.gap = torch.where(counts > 0, measured, measured.sum() / (counts > 0).sum().clamp_min(1))
        else:  # a class absent from this batch keeps its last gap
            blended = self.momentum * self.gap + (1 - self.momentum) * measured
            self.gap = torch.where(counts > 0, blended, self.gap)

    def on_log(self, loop, record: dict) -> None:
        record["class_quota"] = per_class_field([round(s, 4) for s in self.shares("cpu").tolist()])

    def checkpoint_state(self):
        return self  # resume continues with the same shares

    def state_dict(self) -> dict:
        return {"gap": self.gap.detach().cpu() if self.gap is not None else torch.zeros(0)}

    def load_state_dict(self, state: dict) -> None:
        self.gap = state["gap"] if state["gap"].numel() else None

    def summary(self) -> dict:
        return {"class_quota": [round(s, 4) for s in self.shares("cpu").tolist()]}
