"""The student's batches: registered pieces that nest into one chain (``[[batches]]`` in a recipe).

The loop calls ``remember(step, batch)`` once the generator's batch of a step went through the teacher, then
``chain(step, k, batch)`` for each student update ``k`` of the step: the chain's outermost piece answers, asking
the pieces inside it where it does not serve the update itself. Pieces nest by their ``stage``, whatever the
order of the recipe's list: what the step's own batch is (0: ``same`` unless a piece replaces it, ``replay``),
how it is transformed (1: ``augment``), which other batches the extra updates draw (2: ``fresh``, 3: ``pool``).

A piece is built from its recipe parameters (``__init__``: check them, nothing else), ``check``-ed against the
run (:class:`BatchContext`: e.g. it needs extra updates), then ``attach``-ed to the piece inside it.
Its ``state_dict`` is checkpointed with the run (tensors and plain values only: nothing is unpickled).

A new piece is one file with ``@register_batches("name")`` on a subclass of :class:`SameBatch`, and its import
line in datafree/batches/__init__.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from datafree.batches.synthesizer import Batch, Synthesizer
from datafree.config import ConfigError
from datafree.registry import Registry
from datafree.nets.spec import ImageSpec


@dataclass
class BatchContext:
    """What pieces may read of the run when they attach."""

    synthesize: Synthesizer | None  # None while a recipe is only checked (check_chain)
    autocast: Callable | None  # the loop's autocast (Accelerate's), for the pieces' own no-grad forwards
    student_steps: int  # student updates per generator step: the extra ones are 1..student_steps-1
    spec: ImageSpec | None = None
    device: torch.device | None = None
    generator_only: set[str] = field(default_factory=set)  # teacher features only the generator's terms read
    pieces: tuple[str, ...] = ()  # every piece of the chain, by name
    transfer: str = "synthetic"  # train.transfer: "real" has no generator


_PIECES = Registry("student-batch piece", "pieces")
register_batches = _PIECES.register


def list_batches() -> list[str]:
    return _PIECES.names()


def batches_class(name: str) -> type:
    try:
        return _PIECES.get(name)
    except ValueError as err:
        raise ConfigError(f"[[batches]] {err}") from None


@register_batches("same")
class SameBatch:
    """Every student update of a step trains on the generator's batch (the chain's start unless a piece of
    stage 0 replaces it)."""

    stage = 0

    def check(self, context: BatchContext) -> None:
        """Raise ConfigError for a run this piece cannot serve (before anything is built or written)."""

    def attach(self, inner: SameBatch | None, context: BatchContext) -> None:
        """Wire the piece to the one inside it (None for a stage-0 piece) and the run."""
        self.inner = inner

    def needs_extra_updates(self, context: BatchContext) -> None:
        """For pieces that serve the EXTRA updates: a run with ``train.student_steps = 1`` has none."""
        if context.student_steps == 1:
            raise ConfigError(f"[[batches]] {self.registry_name!r} serves the EXTRA student updates of a step, but "
                              "train.student_steps = 1 has none; raise train.student_steps or drop the piece")  # fmt: skip

    def needs_generator(self, context: BatchContext) -> None:
        """For pieces that read the generator: ``train.transfer = "real"`` has none."""
        if context.transfer == "real":
            raise ConfigError(f"[[batches]] {self.registry_name!r} needs the generator, but train.transfer = \"real\" "
                              "has none; drop the piece")  # fmt: skip

    @property
    def batch_size(self) -> int | None:
        """Images in the batches of the extra updates (None: the generator's batch size)."""
        inner = getattr(self, "inner", None)
        return inner.batch_size if inner is not None else None

    def remember(self, step: int, batch: Batch) -> None:
        inner = getattr(self, "inner", None)
        if inner is not None:
            inner.remember(step, batch)

    def state_dict(self) -> dict:
        """What resume needs (saved by datafree.io.trainstate, never pickled)."""
        inner = getattr(self, "inner", None)
        return inner.state_dict() if inner is not None else {}

    def load_state_dict(self, state: dict) -> None:
        inner = getattr(self, "inner", None)
        if inner is not None:
            inner.load_state_dict(state)

    def __call__(self, step: int, k: int, batch: Batch) -> Batch:
        return batch

    def generated_images(self, student_steps: int) -> int:
        """Images the piece has the generator make per step beyond G's own batch (the image counter's share)."""
        inner = getattr(self, "inner", None)
        return inner.generated_images(student_steps) if inner is not None else 0


def check_chain(pieces: list[tuple[str, dict]], context: BatchContext) -> list[SameBatch]:
    """The recipe's pieces (name, params) built and checked against the run, in nesting order (by stage, the
    list's order within a stage); a ConfigError names the piece and the fix."""
    built = _PIECES.create_list(pieces, "[[batches]]")
    context.pieces = tuple(name for name, _ in pieces)
    for piece in built:
        piece.check(context)
    return sorted(built, key=lambda p: p.stage)


def build_chain(pieces: list[tuple[str, dict]], context: BatchContext) -> SameBatch:
    """The recipe's pieces, checked, nested and attached: the chain the loop asks for its batches."""
    chain: SameBatch | None = None
    for piece in check_chain(pieces, context):
        if chain is None and piece.stage > 0:
            chain = SameBatch()
            chain.attach(None, context)
        piece.attach(chain, context)
        chain = piece
    if chain is None:
        chain = SameBatch()
        chain.attach(None, context)
    return chain
