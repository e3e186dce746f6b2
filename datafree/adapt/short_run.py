"""``short_run``: a run planned for few student updates trains its student at twice the learning rate.

Why: the default's student (Adam at 0.002, cosine to zero over the run) was set on runs of 550-2,600 steps. A run
that fits fewer steps in its budget (a slow CPU, a large image, a costly pair) anneals the same schedule over fewer
updates, and its student ends short of where the longer run's got: such runs are step-bound (the 64-px MobileNet pair
gains 9 points from twice the minutes). Twice the learning rate moves the student further per update. Measured at
0.004 against 0.002 (docs/changelog.md, 2026-12-07, evening, and 2026-12-07, late): on runs of 80-450 steps it gained
on most pair-seeds (the recipe check's four grey pairs, the zoo's ResNet and MobileNet pairs and GroupNorm ->
MobileNet, both 64-px pairs); on the MLP pairs' runs of 1,300-2,100 steps it was even. So the rule acts only below
what was measured: fewer than ``most_updates`` planned student updates (``train.steps x train.student_steps``; 500
steps of the default's 10 updates). Above it nothing changes, bit for bit.

When: in the ``"plan"`` phase, once ``train.max_minutes`` has set ``train.steps`` (before step 0: the schedule spans
the plan). The budget's re-plans (at 10% and 50% of the run) move the step count, not the learning rate decided here.
Only the preset's own learning rate, with Adam (the optimizer it was measured with): a learning rate or optimizer
the recipe sets itself is kept as it is.
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
        return (f"the run plans {updates:,} student updates ({t.steps} steps x {t.student_steps}), fewer than "
                f"{self.most_updates:,}")  # fmt: skip

    def apply(self, config: Config) -> tuple[Config, str]:
        changed = copy.deepcopy(config)
        changed.student.lr = config.student.lr * self.factor
        return changed, f"the student's learning rate {config.student.lr:g} -> {changed.student.lr:g}"
