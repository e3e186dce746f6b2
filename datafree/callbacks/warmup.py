"""``warmup``: the first steps of a run train the generator alone."""

from __future__ import annotations

from datafree.callbacks.base import Callback, CallbackContext, register_callback
from datafree.config import ConfigError


@register_callback("warmup")
class WarmUp(Callback):
    """The first ``fraction`` of the planned steps update the generator alone, so the student's first batches are
    images the generator has already learned to make recognizable (CMI, Fang et al. 2021, and Fast, Fang et al. 2022,
    warm their generators up the same way; the fraction is ours to choose). The student's LR schedule spans the
    steps after it. Its length is a fraction of the first plan, so a run with a warm-up keeps its step count: no
    budget re-plan (``fixed_plan``)."""

    order = 95  # last: it only says how many student updates a step makes, and leaves the others' checkpoint names
    fixed_plan = True

    def __init__(self, fraction: float = 0.2):
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(f"[[callbacks]] \"warmup\": fraction is the share of train.steps without student updates, "
                              f"in [0, 1) (e.g. 0.2), got {fraction!r}")  # fmt: skip
        self.fraction = float(fraction)
        self.steps = 0

    def check(self, context: CallbackContext) -> None:
        if context.transfer == "real":
            raise ConfigError("[[callbacks]] \"warmup\" trains the generator alone first, but train.transfer = \"real\" "
                              "has no generator step; remove the warmup callback (or train.warmup)")  # fmt: skip

    def generator_only_steps(self, steps: int) -> int:
        return min(int(round(self.fraction * steps)), steps - 1)

    def attach(self, context: CallbackContext) -> None:
        self.steps = self.generator_only_steps(context.steps)

    def student_updates(self, step: int, updates: int) -> int:
        return 0 if step < self.steps else updates
