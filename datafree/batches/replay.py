"""``replay``: update k > 0 of a step revisits the batch of step - k, from a ring of the last ``size`` batches.

No new generator or teacher work: the cheapest way to give the student more updates per generator step, at
the price of batches that a moving generator has already left behind (``fresh`` draws new ones instead).
"""

from __future__ import annotations

from datafree.batches.base import BatchContext, SameBatch, register_batches
from datafree.batches.synthesizer import Batch
from datafree.config import ConfigError
from datafree.nets.features import NetOutput


@register_batches("replay")
class ReplayBatches(SameBatch):
    stage = 0  # it is the step's batch source: the generator's batch, or a recent one

    def __init__(self, size: int = 8):
        if not isinstance(size, int) or size < 1:
            raise ConfigError(f"[[batches]] \"replay\": size is the ring's number of batches (>= 1), got {size!r}")
        self.size = size
        self.ring: list[Batch | None] = [None] * size
        self.drop: set[str] = set()

    def check(self, context: BatchContext) -> None:
        self.needs_extra_updates(context)
        if "fresh" in context.pieces:
            raise ConfigError("[[batches]] \"replay\" and \"fresh\" both choose the extra student updates' batches; "
                              "keep one")  # fmt: skip

    def attach(self, inner: SameBatch | None, context: BatchContext) -> None:
        self.inner = None
        self.drop = set(context.generator_only)  # teacher features the student never reads: kept, they would
        # fill memory and checkpoints

    @property
    def batch_size(self) -> int | None:
        return None

    def remember(self, step: int, batch: Batch) -> None:
        images, out = batch
        self.ring[step % len(self.ring)] = (images, NetOutput(out.logits, {k: v for k, v in out.features.items()
                                                                            if k not in self.drop}))  # fmt: skip

    def state_dict(self) -> dict:
        """The filled slots: images, the teacher's logits and features (checkpointed: resume stays exact)."""
        return {str(i): {"images": b[0], "logits": b[1].logits, "features": dict(b[1].features)}
                for i, b in enumerate(self.ring) if b is not None}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.ring = [None] * len(self.ring)
        for i, b in state.items():
            self.ring[int(i)] = (b["images"], NetOutput(b["logits"], dict(b["features"])))

    def __call__(self, step: int, k: int, batch: Batch) -> Batch:
        return (self.ring[(step - k) % len(self.ring)] or batch) if k > 0 else batch

    def generated_images(self, student_steps: int) -> int:
        return 0
