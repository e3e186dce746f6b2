"""The generator's objective: registered terms (one file per family), summed by :class:`SynthesisObjective`.

A new term is one file with ``@register_synthesis_term("name")`` plus its import line below.
"""

from datafree.synthesis.base import (SynthBatch, SynthesisObjective, SynthesisTerm, TermContext,  # noqa: F401
                                     create_synthesis_term, list_synthesis_terms, register_synthesis_term,
                                     synthesis_term_class)  # fmt: skip
from datafree.synthesis import adversarial, class_image_stats, dafl, feature_stats, image_priors, l2  # noqa: F401  (registration)
from datafree.synthesis.adversarial import adversarial_loss  # noqa: F401
from datafree.synthesis.dafl import activation_loss, batch_mean_probs, entropy_loss, one_hot_loss  # noqa: F401
from datafree.synthesis.feature_stats import class_feature_stats_loss, feature_stats_loss  # noqa: F401
from datafree.synthesis.image_priors import moment_loss, total_variation_loss  # noqa: F401
