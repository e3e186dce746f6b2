"""``no_norm_student``: a student without normalization layers also learns the teacher's penultimate features.

Why: KD gives the student ten numbers per image; the teacher's penultimate features carry its whole last
representation (64-256 numbers in the zoo), more of what separates the classes on images unlike the generator's.
On BatchNorm students (ResNet-8-narrow, MobileNet-tiny; 3 seeds) the ``penultimate`` loss beside KD changed nothing
(docs/changelog.md, 2026-11-30); on students without normalization it gained at every one of 3 seeds on VGG ->
plain CNN (83.57 against 82.53: with it that held-out pair meets its targets) and on label-smoothed VGG -> MLP
(75.64 against 74.30), and on average on GroupNorm -> MLP (75.87 against 75.31), but lost 2.1 points on ViT ->
plain CNN (71.74 against 73.83, 3 seeds; docs/changelog.md, 2026-12-06, later). Those pairs chose it; on a pair
outside them (ResNet-20 -> MLP, 3 seeds) it did not gain (68.77 against 69.64), so no preset lists it: a recipe
opts in with ``train.adapt = ["no_norm_student"]``. A recipe that already lists ``penultimate`` keeps its own entry.
"""

from __future__ import annotations

import copy

from torch import nn

from datafree.adapt import Adaptation, register_adaptation
from datafree.config import Config, TermConfig
from datafree.nets.feature_stats import PER_SAMPLE_NORMS

# BatchNorm (1d/2d/3d, synced), the per-sample norms whose inputs the statistics terms read, and the rest
NORMALIZATIONS = (nn.modules.batchnorm._BatchNorm, *PER_SAMPLE_NORMS, nn.RMSNorm, nn.LocalResponseNorm)


@register_adaptation("no_norm_student")
class NoNormStudent(Adaptation):
    weight = 1.0

    def reason(self, teacher: nn.Module, student: nn.Module, config: Config) -> str:
        if any(isinstance(module, NORMALIZATIONS) for module in student.modules()):
            return ""
        return "the student has no normalization layer"

    def apply(self, config: Config) -> tuple[Config, str]:
        if any(term.name == "penultimate" for term in config.distill):
            return config, ""
        changed = copy.deepcopy(config)
        changed.distill.append(TermConfig(name="penultimate", weight=self.weight))
        return changed, (f"the teacher's penultimate features distilled beside the recipe's losses (penultimate, "
                         f"weight {self.weight:g})")  # fmt: skip
