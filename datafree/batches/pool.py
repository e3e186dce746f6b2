"""``pool``: a memory of the generator's past images for the student; some extra updates draw from it.

At any one step the generator makes a narrow set of images per class: on the zoo's MobileNet (one seed;
``runs/class_gap.py``) the teacher's penultimate features of the final generator's shirts spread half as far as
real shirts' (trace of the covariance 0.51 of the real one; 0.60-1.92 for the other classes), and the student
agrees with its teacher on 81% of the generated shirts but on 36% of the real ones the teacher calls Shirt
(82-99% on the other classes' real images). The generator keeps moving (the adversarial term, the blends, its
own updates), so its images over the whole run cover more than any one step's. ``ImagePool`` keeps a uniform
sample of every generator batch the run made (reservoir sampling, Vitter's algorithm R: after n images each is
in the pool with probability N / n) and serves a share ``share`` of the student's extra updates from
it, flipped / shifted as the other batches and relabelled by the teacher (the pool stores images, never
targets: the labels are always the current teacher's). Fast (Fang et al., AAAI 2022) and CMI (Fang et al.,
IJCAI 2021) train their students on such a memory of everything synthesized; here the rest of the updates stay
on the current generator's batches, so the adversarial term still finds where the student is wrong *now*. A
pooled update costs a teacher forward and no generator forward (cheaper than a fresh batch).

Memory: N images of the teacher's input size on the training device (32,768 Fashion-MNIST images at 32x32:
128 MiB), saved with each checkpoint so resume stays exact.
"""

from __future__ import annotations

import math

import torch

from datafree.batches.base import BatchContext, SameBatch, register_batches
from datafree.batches.synthesizer import Batch, latent_seed
from datafree.config import ConfigError

POOL_DRAW = 2_000_000  # the pool's draws at (seed, rank, step, POOL_DRAW + k): apart from the batches' own


def pooled_updates(student_steps: int, share: float) -> list[int]:
    """The extra updates k (1 <= k < student_steps) served from the pool: spread evenly, ``share`` of them."""
    return [k for k in range(1, student_steps) if math.floor(k * share) > math.floor((k - 1) * share)]


@register_batches("pool")
class ImagePool(SameBatch):
    """The inner piece's batches, but the updates in ``pooled_updates`` draw ``batch`` images (0: the inner piece's
    batch size) from a reservoir of ``size`` past generator images (G's own batch of every step, before
    augmentation)."""

    stage = 3

    def __init__(self, size: int = 32768, share: float = 0.5, batch: int = 0):
        if not isinstance(size, int) or size < 1 or not 0.0 < share <= 1.0:
            raise ConfigError(f"[[batches]] \"pool\": size is a number of images (e.g. 32768) and share a share of the "
                              f"extra student updates in (0, 1], got {size!r}, {share!r}")  # fmt: skip
        if not isinstance(batch, int) or batch < 0 or batch == 1:
            raise ConfigError(f"[[batches]] \"pool\": batch = {batch!r} images per pooled batch: at least 2, or 0 for "
                              "the batches it stands in for")  # fmt: skip
        self.capacity, self.share, self.batch = size, float(share), batch

    def check(self, context: BatchContext) -> None:
        self.needs_extra_updates(context)
        self.needs_generator(context)  # it keeps the generator's past images

    def attach(self, inner: SameBatch | None, context: BatchContext) -> None:
        self.inner, self.synthesize, self.autocast = inner, context.synthesize, context.autocast
        self.size = self.batch or inner.batch_size or self.synthesize.batch_size
        self.from_pool = set(pooled_updates(context.student_steps, self.share))
        self.rows: torch.Tensor | None = None  # (capacity + 1, C, H, W) once the first batch arrives: the pool + a
        # row that takes the images not kept (so the reservoir's update is one copy, without a host sync)
        self.seen = 0  # generator images offered to the reservoir so far
        self.rng = torch.Generator(device=self.synthesize.device)

    def _reseed(self, step: int, k: int) -> None:
        s = self.synthesize
        self.rng.manual_seed(latent_seed(s.seed, s.rank, step, POOL_DRAW + k))

    @torch.no_grad()
    def remember(self, step: int, batch: Batch) -> None:
        """Offer G's batch to the reservoir: image n (0-based, over the run) takes a uniform slot j <= n if j < N."""
        self.inner.remember(step, batch)
        images = batch[0].detach().contiguous()
        if self.rows is None:
            self.rows = images.new_zeros((self.capacity + 1, *images.shape[1:]))
        self._reseed(step, 0)
        n = self.seen + torch.arange(len(images), device=images.device)
        slots = (torch.rand(len(images), generator=self.rng, device=images.device) * (n + 1)).long()
        slots = torch.where(n < self.capacity, n, slots).clamp_max(self.capacity)
        drawn_again_later = (slots[:, None] == slots[None, :]).triu(diagonal=1).any(dim=1)
        slots = torch.where(drawn_again_later, self.capacity, slots)  # a slot drawn twice keeps the later image,
        self.rows.index_copy_(0, slots, images)  # as the sequential algorithm would
        self.seen += len(images)

    @property
    def images(self) -> torch.Tensor | None:
        """The pool's ``capacity`` slots (the first ``filled`` hold images)."""
        return None if self.rows is None else self.rows[: self.capacity]

    @property
    def filled(self) -> int:
        return min(self.seen, self.capacity)

    def state_dict(self) -> dict:
        """The pool (its filled slots) and the count: checkpointed beside the inner piece's, so resume is exact."""
        state = {"inner": self.inner.state_dict(), "seen": self.seen}
        return state | ({"images": self.images[: self.filled]} if self.images is not None else {})

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        self.seen = int(state["seen"])
        if "images" in state:
            kept = state["images"].to(self.synthesize.device)
            self.rows = kept.new_zeros((self.capacity + 1, *kept.shape[1:]))
            self.rows[: len(kept)] = kept

    def generated_images(self, student_steps: int) -> int:
        """The inner piece's count less the batches the pool serves (they make no new image)."""
        inner = self.inner.generated_images(student_steps)
        return max(0, inner - len(self.from_pool) * self.size)

    def __call__(self, step: int, k: int, batch: Batch) -> Batch:
        if k not in self.from_pool or self.filled == 0:
            return self.inner(step, k, batch)
        self._reseed(step, k)
        with torch.no_grad(), self.autocast():
            index = torch.randint(self.filled, (self.size,), generator=self.rng, device=self.rng.device)
            return self.synthesize.relabelled(self.images[index], self.rng)
