"""``precise_bn``: the student's BatchNorm statistics recomputed on un-augmented generator images before it is judged.

A BatchNorm student trains on batch statistics and is evaluated (and deployed) with its running statistics,
an exponential average (momentum 0.1, about the last ten batches) of the batches it trained on. Those batches
are flipped and shifted by up to 2 px with black fill (the ``augment`` batch piece), and real images are neither, so
the running statistics describe another distribution than the one the student meets. ``PreciseBatchNorm``
(``[[callbacks]] precise_bn``, ``batches = n``) replaces them, before every evaluation and at the end of the run, by the plain
average over ``n`` batches of the generator's images as they come out of it (no augmentation), the student's
weights held fixed::

    mu_l  = mean over the n batches of the batch means of layer l's input
    var_l = mean over the n batches of the (unbiased) batch variances                 (momentum = None)

This is torch's ``torch.optim.swa_utils.update_bn`` (what it does for SWA's averaged weights), on
"PreciseBN" (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021: population statistics computed with the
final weights instead of an EMA over changing ones); the difference here is the data: the generator's
un-augmented images, nothing real. Measured on the zoo's saved students (``runs/precise_bn_check.py``) and
on whole runs: docs/changelog.md.

What it touches: the shipped student's BatchNorm buffers (the EMA's average with the ``ema`` callback), which
training never reads (train mode normalizes with batch statistics; only the ``quota`` callback's gap, an eval-mode
forward, sees them until the next updates have moved them again); the generator's own BatchNorm buffers are
put back as they were. Every rank draws the same latents (rank 0's), so every rank gets the same statistics.
A student without BatchNorm costs nothing. With ``train.transfer = "real"`` the images are the real transfer
set's, drawn the same way. Deterministic in (seed, step): a resumed run recomputes the same statistics.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn

from datafree.callbacks.base import Callback, register_callback
from datafree.config import ConfigError

DRAW = 1_000_000  # latent draws far above the fresh batches' (1 .. student_steps - 1): never the same images


@register_callback("precise_bn")
class PreciseBatchNorm(Callback):
    """The shipped student's BatchNorm running statistics from ``batches`` un-augmented generator batches."""

    order = 10  # before the EMA: at the end it recomputes the average's statistics, which the EMA then copies

    def __init__(self, batches: int = 20):
        if not isinstance(batches, int) or batches < 1:
            raise ConfigError(f"[[callbacks]] \"precise_bn\": batches is a number of generator batches (>= 1, e.g. "
                              f"20), got {batches!r}")  # fmt: skip
        self.batches = batches
        self.done_at: int | None = None  # the step whose statistics the student holds

    def recompute(self, loop) -> None:
        """Reset the student's running statistics and average them over the batches (no gradient anywhere)."""
        net = loop.accelerator.unwrap_model(loop.shipped_student)
        net = getattr(net, "net", net)  # a StudentWithLosses' network; the EMA ships a bare one
        if not has_batchnorm(net):
            return
        step, synthesize = loop.progress.step, loop.synthesize
        kept = {name: b.clone() for name, b in loop.generator.named_buffers()}  # the generator's BN buffers
        batches = (synthesize.layout(synthesize.images(step, DRAW + i, rank=0)[0]) for i in range(self.batches))
        with torch.no_grad(), loop.accelerator.autocast():
            update_bn(batches, net)
            for name, buffer in loop.generator.named_buffers():
                buffer.copy_(kept[name])
        self.done_at = step

    def on_evaluate(self, loop) -> None:
        self.recompute(loop)

    def on_fit_end(self, loop) -> None:
        if self.done_at != loop.progress.step:  # no evaluation at the last step (e.g. no test set)
            self.recompute(loop)


def has_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` holds a BatchNorm layer (whose statistics PreciseBatchNorm would recompute)."""
    return any(isinstance(m, _BatchNorm) for m in module.modules())
