"""``class_image_stats``: each class's images as different from one another as its training images were, at
every layer the feature priors read.

The per-class feature prior (``class_feature_stats``) matches a layer's moments over images x positions; a batch
meets its variance with images that are all alike, as long as each varies across its own positions. The generator
does just that: on the zoo's GroupNorm -> MLP pair, a class's generated images have about half the spread of its
real ones in size and brightness (docs/changelog.md, 2026-12-06), and the student, which never saw the rest of the
class, agrees with its teacher on 79-99% of the generated images but 40-96% of the real ones. This term reads
each image's average over positions per channel, and asks that, for the images made for class k, these have the
mean and the spread *between images* that class k's training images had:

    L = (1/|layers|) sum_l sum_k (n_k / n) * relative_gap(mu_lk(a), var_lk(a), mu_ref_lk, var_ref_lk, var_pool_l)

with a_ic the average of image i's channel c over positions, and relative_gap / var_pool as in
``class_feature_stats`` (:func:`~datafree.synthesis.feature_stats.relative_class_feature_stats_loss`). It is
``class_penultimate_stats``' spread between images, read at the early and middle layers too. The spread is the
batch's biased one (over the n_k images of class k, about five in a batch of 64 over 10 classes), as in the other
per-class terms. Recorded by ``record_teacher_stats`` / ``train_teacher.py`` beside the other statistics
(``<tap>@images``); not in any paper we implement: DeepInversion's per-class prior on the spread between images.
"""

from __future__ import annotations

from datafree.nets.feature_stats import BETWEEN_IMAGES
from datafree.synthesis.base import SynthBatch, register_synthesis_term
from datafree.synthesis.feature_stats import ClassFeatureStats, Moments


@register_synthesis_term("class_image_stats", log_name="g_image_stats")
class ClassImageStats(ClassFeatureStats):
    """Per class, each layer's per-image averages over positions spread between images as the class's training
    images' were (forward: ``class_feature_stats``' own, on those averages)."""

    per_class, recorded_key, what = True, BETWEEN_IMAGES, "spread between images"

    def __init__(self, layers: list[str] | None = None, normalized: bool = True, optional: bool = False):
        super().__init__(layers=layers, normalized=normalized, optional=optional)

    def _rows(self, batch: SynthBatch) -> Moments:
        """Each image's averages a and their squares: the moments over a class's images are then those of a."""
        rows = {}
        for tap in self.reference:
            first, _ = batch.image_moments(tap)
            rows[tap] = (first, first * first)
        return rows
