"""``ema_generator``: a share of the extra student updates draws its batch from a moving average of the generator.

MAD (Do et al., "Momentum Adversarial Distillation: Handling Large Distribution Shifts in Data-Free Knowledge
Distillation", NeurIPS 2022) keeps an exponential moving average G~ of the generator, G~ <- d G~ + (1 - d) G
after every generator update, and trains the student on G~'s images beside G's: G~ is an ensemble of the
generator's past versions that moves slowly, so the student keeps rehearsing what the generator made before
instead of following each of its updates. Here the updates in ``pooled_updates(student_steps, share)`` draw
G~'s images (its own latents, the classes the run asks for, flipped / shifted like every student batch and
labelled by the teacher); the other updates keep the inner piece's batches. Deviations from the paper: G~'s
images serve a share of the extra updates (MAD adds a loss term on them every step); ``decay`` is our default,
not the paper's value; G~ averages the generator as it made each step's batch, one update behind MAD's. G~'s weights and buffers are checkpointed with the run.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from datafree.batches.base import BatchContext, SameBatch, register_batches
from datafree.batches.pool import pooled_updates
from datafree.batches.synthesizer import Batch
from datafree.config import ConfigError

EMA_DRAW = 3_000_000  # G~'s latents at (seed, rank, step, EMA_DRAW + k): apart from the other batches' draws


@register_batches("ema_generator")
class EMAGeneratorBatches(SameBatch):
    stage = 3  # like the pool: it serves some extra updates itself and passes the others inward

    def __init__(self, decay: float = 0.99, share: float = 0.5):
        if not 0.0 < decay < 1.0 or not 0.0 < share <= 1.0:
            raise ConfigError(f"[[batches]] \"ema_generator\": decay in (0, 1) (e.g. 0.99) and share of the extra "
                              f"student updates in (0, 1], got {decay!r}, {share!r}")  # fmt: skip
        self.decay, self.share = float(decay), float(share)

    def check(self, context: BatchContext) -> None:
        self.needs_extra_updates(context)
        self.needs_generator(context)  # it averages the generator

    def attach(self, inner: SameBatch | None, context: BatchContext) -> None:
        self.inner, self.synthesize, self.autocast = inner, context.synthesize, context.autocast
        self.size = inner.batch_size or self.synthesize.batch_size
        self.from_average = set(pooled_updates(context.student_steps, self.share))
        self.average: AveragedModel | None = None  # made from the generator at the first step's end

    def _generator(self) -> torch.nn.Module:
        """The bare generator (the loop's may be wrapped for several processes or compiled)."""
        generator = self.synthesize.generator
        generator = getattr(generator, "module", generator)
        return getattr(generator, "_orig_mod", generator)

    @torch.no_grad()
    def remember(self, step: int, batch: Batch) -> None:
        """G~ <- decay G~ + (1 - decay) G, G as it made ``step``'s batch (G itself at the first step): the average
        runs one generator update behind MAD's, which averages after the update."""
        self.inner.remember(step, batch)
        if self.average is None:
            self.average = AveragedModel(self._generator(), multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                         use_buffers=True)  # fmt: skip
        self.average.update_parameters(self._generator())

    def state_dict(self) -> dict:
        average = {} if self.average is None else dict(self.average.state_dict())
        return {"inner": self.inner.state_dict(), "average": average}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        if state["average"]:
            self.average = AveragedModel(self._generator(), multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                         use_buffers=True)  # fmt: skip
            self.average.load_state_dict(state["average"])

    def __call__(self, step: int, k: int, batch: Batch) -> Batch:
        if k not in self.from_average or self.average is None:
            return self.inner(step, k, batch)
        s = self.synthesize
        with torch.no_grad(), self.autocast():
            z = s.sample_latent(step, draw=EMA_DRAW + k, size=self.size)
            labels = None if s.make_labels is None else s.make_labels(len(z), s.device, s.rng)
            images = self.average.module(z) if labels is None else self.average.module(z, labels)
            return s.relabelled(images, s.rng)
