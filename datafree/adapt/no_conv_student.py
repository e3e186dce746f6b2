"""``no_conv_student``: a student without convolutions gets the per-class feature priors at 4x their weights.

Why: a convolutional student shares its teacher's way of reading images (local filters, pooling), so it learns
the classes from images the teacher finds typical of them even where they do not look like the training images;
a student without convolutions (an MLP) reads the images pixel by pixel and learns from what they look like. The
per-class priors (``class_feature_stats``, ``class_penultimate_stats``) spread each class's generated images as
the class's training images were, as the teacher sees them: stronger, they bring the images closer to what an MLP
meets at test time. Measured on the zoo's two MLP pairs, 3 seeds each: +1.7 and +2.0 points on average, five of
six runs above every run without the rule (docs/changelog.md, 2026-12-05, night). Those two pairs chose it; on a
fresh one (ResNet-20 -> MLP, 3 seeds) it changed nothing (69.71 against 69.64; docs/changelog.md, 2026-12-06,
later), so no preset lists it: a recipe opts in with ``train.adapt = ["no_conv_student"]``. On a convolutional
student (VGG -> plain CNN) the same weights cost 1.3 points.
The terms read recorded statistics: without a record they are off, and this rule changes nothing that runs.
"""

from __future__ import annotations

import copy

from torch import nn

from datafree.adapt import Adaptation, register_adaptation
from datafree.config import Config

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
PER_CLASS_PRIORS = ("class_feature_stats", "class_penultimate_stats")


@register_adaptation("no_conv_student")
class NoConvStudent(Adaptation):
    factor = 4.0

    def reason(self, teacher: nn.Module, student: nn.Module, config: Config) -> str:
        if any(isinstance(module, CONVOLUTIONS) for module in student.modules()):
            return ""
        return "the student has no convolution, so it learns from what the images look like, pixel by pixel"

    def apply(self, config: Config) -> tuple[Config, str]:
        changed = copy.deepcopy(config)
        terms = [term for term in changed.synthesis if term.name in PER_CLASS_PRIORS and term.weight]
        for term in terms:
            term.weight *= self.factor
        if not terms:
            return config, ""
        names = " and ".join(term.name for term in terms)
        return changed, f"{names} at {self.factor:g}x their weights (where a record gives them statistics to read)"
