"""DAFL's generator objective (Chen et al., ICCV 2019, Eq. 3-6): the frozen teacher as a fixed discriminator.

For a batch of n synthetic images with teacher logits y_T^i and penultimate features f_T^i:

- ``onehot``      L_oh = (1/n) sum_i CE(y_T^i, argmax_j y_T^i[j])          (confident predictions)
- ``activation``  L_a  = -(1/n) sum_i ||f_T^i||_1                           (paper, ``reduction="l1"``)
                         -(1/(n*d)) sum_i ||f_T^i||_1 = -mean|f|             (official code, ``"mean"``)
- ``entropy``     L_ie = -H(p_bar) = sum_j p_bar_j log p_bar_j,  p_bar = (1/n) sum_i softmax(y_T^i)
                         with natural log (paper, ``log="ln"``) or log10 (official, ``"log10"``)

Weights oh=1, a=0.1, ie=5 (``datafree.config.dafl_terms``). The official code's conventions are the defaults
because they produced the published numbers: "mean" divides the paper's activation loss by the feature size d
(e.g. 120 for LeNet-5, 512 for ResNet), and log10 divides the entropy by ln(10) ~ 2.303. So the paper's
weights mean different strengths under the two conventions.

With several processes, p_bar is taken over the global batch (all ranks) when ``global_batch`` is on: the
other ranks' sums enter as constants, and the local part's gradient is scaled by the world size so that after
DDP averages gradients, N processes x batch B give exactly the gradient of one batch N x B.
With several teachers (an ensemble source), the activation term averages over each member's penultimate feature.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from datafree.synthesis.base import SynthBatch, SynthesisTerm, TermContext, register_synthesis_term


def one_hot_loss(logits: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against the teacher's own argmax, or the classes (or soft targets: the ``blend`` callback) a
    conditional generator was asked for."""
    return F.cross_entropy(logits, logits.detach().argmax(dim=1) if targets is None else targets)


def activation_loss(features: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Negative feature magnitude: real images excite the teacher's filters more than noise does."""
    flat = features.flatten(1)
    if reduction == "mean":
        return -flat.abs().mean()
    if reduction == "l1":
        return -flat.abs().sum(dim=1).mean()
    raise ValueError(f"activation reduction must be 'mean' or 'l1', got {reduction!r}")


def entropy_loss(mean_probs: torch.Tensor, log: str = "log10") -> torch.Tensor:
    """Negative entropy of the batch-mean class distribution: minimizing it balances the classes."""
    log_p = torch.log(mean_probs.clamp_min(1e-12))
    if log == "log10":
        log_p = log_p / math.log(10.0)
    elif log != "ln":
        raise ValueError(f"entropy log must be 'log10' or 'ln', got {log!r}")
    return (mean_probs * log_p).sum()


def batch_mean_probs(logits: torch.Tensor, reduce_sum=None, world_size: int = 1) -> torch.Tensor:
    """p_bar over the local batch, or over the global batch when a cross-process sum is given."""
    probs = F.softmax(logits.float(), dim=1)
    if reduce_sum is None or world_size == 1:
        return probs.mean(dim=0)
    local_sum = probs.sum(dim=0)
    global_sum = reduce_sum(local_sum.detach())
    # value = global sum; gradient = world_size x local (DDP divides it back by world_size)
    scaled = global_sum + world_size * (local_sum - local_sum.detach())
    return scaled / (logits.shape[0] * world_size)


@register_synthesis_term("onehot")
class OneHot(SynthesisTerm):
    def forward(self, batch: SynthBatch) -> torch.Tensor:
        return one_hot_loss(batch.teacher.logits.float(), batch.labels)


@register_synthesis_term("activation")
class Activation(SynthesisTerm):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in {"mean", "l1"}:
            raise ValueError(f"activation reduction must be 'mean' or 'l1', got {reduction!r}")
        self.reduction, self.taps = reduction, ()

    @property
    def teacher_taps(self) -> tuple[str, ...]:
        return self.taps

    def setup(self, context: TermContext) -> None:
        self.taps = tuple(context.teacher.penultimate_taps)

    def forward(self, batch: SynthBatch) -> torch.Tensor:
        values = [activation_loss(batch.teacher.features[tap].float(), self.reduction) for tap in self.taps]
        return values[0] if len(values) == 1 else torch.stack(values).mean()


@register_synthesis_term("entropy")
class Entropy(SynthesisTerm):
    def __init__(self, log: str = "log10", global_batch: bool = True):
        super().__init__()
        if log not in {"log10", "ln"}:
            raise ValueError(f"entropy log must be 'log10' or 'ln', got {log!r}")
        self.log, self.global_batch = log, global_batch
        self.reduce_sum, self.world_size = None, 1

    def setup(self, context: TermContext) -> None:
        if self.global_batch:
            self.reduce_sum, self.world_size = context.reduce_sum, context.world_size

    def forward(self, batch: SynthBatch) -> torch.Tensor:
        mean_probs = batch_mean_probs(batch.teacher.logits, self.reduce_sum, self.world_size)
        asked = self.asked(batch.labels, mean_probs.shape[0])
        if asked is not None:  # balance among the classes the batch was made for, not all K
            mean_probs = mean_probs[asked] / mean_probs[asked].sum()
        return entropy_loss(mean_probs, self.log)

    def asked(self, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor | None:
        """The classes a conditional generator's batch (every rank's, with ``global_batch``) was made for, as a mask,
        when they are fewer than K; None when it asked for every class or no class (an unconditional generator).

        Why: with more classes than a batch holds (K > n: a window of classes per batch,
        datafree/callbacks/rotation.py), the entropy of the batch mean over all K classes is highest when every image
        spreads its answer over classes it was not made for, against the one-hot term. Over the asked classes the
        term keeps DAFL's purpose, a balanced batch. Measured on the 100-class ``fmnist-pairs100`` teacher (seed 0):
        21.99% against 17.33%, the one-hot term still near 6 nats; what let the generator make its classes was the
        per-class offset of the latent (generators/conditional.py; docs/changelog.md, 2026-12-05). Our extension
        (DAFL's generator is unconditional); with K <= n nothing changes.
        """
        if labels is None:
            return None
        mask = (labels.detach().float().sum(dim=0) if labels.is_floating_point()
                else torch.bincount(labels.detach(), minlength=num_classes).float())  # fmt: skip
        if self.reduce_sum is not None and self.world_size > 1:
            mask = self.reduce_sum(mask)
        mask = mask > 0
        return None if bool(mask.all()) else mask
