"""``short_run``: a run whose time budget fits few student updates trains its student at twice the learning rate.

Why: the default's student (Adam at 0.002, cosine to zero over the run) is what the zoo's runs of 550-2,600 steps
were measured with. A run that fits fewer steps in its budget (a slow CPU, a large image, a costly pair) anneals the
same schedule over fewer updates and ends short of where a longer run gets: the 64-px MobileNet pair gains 9 points
from twice the minutes. Twice the learning rate moves the student further per update. Measured at 0.004 against
0.002, 3 seeds each, 10-minute runs on a 2-core CPU (docs/changelog.md, 2026-12-07, evening and late), mean final:
ResNet-20 -> ResNet-8-narrow 84.19 against 83.29 (runs of 432-591 steps), MobileNet-small -> MobileNet-tiny 85.92
against 85.30 (365-458), GroupNorm CNN -> MobileNet-tiny 84.09 against 83.75 (376-479), the 64-px MobileNet pair
66.92 against 63.36 (377-425), the 64-px ResNet pair 21.69 against 20.13 (281-402); the recipe check's grey pairs
(80-300 fixed steps) three of four up. On the MLP pairs' runs of 1,300-2,100 steps it was even (one seed each: -2.1,
+2.3), and nothing was measured between 600 and 1,300 steps. So the rule acts only where it was measured: fewer than
``most_updates`` planned student updates (``train.steps x train.student_steps``; 500 steps of the default's 10).
Above it nothing changes, bit for bit.

Only where a ``train.max_minutes`` budget planned the run: the rule makes up for steps the budget could not fit. The
run's length is what the learning rate answers to (the recipe check's fixed-step pairs gained too), but a recipe
that sets ``train.steps`` without a budget chose its length and can choose its learning rate with it: such runs
(the recipe check, the fixed-step benchmarks) are unchanged.

When: in the ``"plan"`` phase, once ``train.max_minutes`` has set ``train.steps`` (before step 0: the schedule spans
the plan). The budget's re-plans (at 10% and 50% of the run) move the step count, not the learning rate decided
here, and a resumed run takes its learning rate from its checkpoint (the schedule's state). Only the preset's own
learning rate, with Adam (the optimizer it was measured with): a learning rate or optimizer the recipe sets itself
is kept as it is.
"""

from __future__ import annotations

import copy

from torch import nn

from datafree.adapt import Adaptation, register_adaptation
from datafree.config import Config
from datafree.config.presets import PRESETS


@register_adaptation("short_run")
class ShortRun(Adaptation):
    phase = "plan"
    most_updates = 5000
    factor = 2.0

    def reason(self, teacher: nn.Module, student: nn.Module, config: Config) -> str:
        t = config.train
        updates = t.steps * t.student_steps
        presets = PRESETS.get(config.preset, {}).get("student", {})
        if (config.student.optimizer, config.student.lr) != ("adam", presets.get("lr")) or updates >= self.most_updates:
            return ""  # a long run, or a learning rate / optimizer the recipe chose
        if not t.max_minutes:
            return ""  # no budget: the recipe chose its steps (and its learning rate with them)
        return (f"the {t.max_minutes:g}-minute budget fits {updates:,} student updates ({t.steps} steps x "
                f"{t.student_steps}), fewer than {self.most_updates:,}")  # fmt: skip

    def apply(self, config: Config) -> tuple[Config, str]:
        changed = copy.deepcopy(config)
        changed.student.lr = config.student.lr * self.factor
        return changed, f"the student's learning rate {config.student.lr:g} -> {changed.student.lr:g}"
