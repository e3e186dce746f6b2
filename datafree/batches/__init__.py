"""Where the student's batches come from: the synthesizer and the registered student-batch pieces.

``[[batches]]`` in a recipe lists pieces by name with their params (datafree/batches/base.py says how they nest);
a new piece is one file with ``@register_batches("name")`` plus its import line below.
"""

from datafree.batches.synthesizer import Augmenter, Batch, Synthesizer, label_autocast, latent_seed  # noqa: F401
from datafree.batches.base import (BatchContext, SameBatch, batches_class, build_chain, check_chain, list_batches,  # noqa: F401
                                   register_batches)  # fmt: skip
from datafree.batches import augment, ema_generator, fresh, pool, replay  # noqa: F401  (registration)
from datafree.batches.augment import Augmented  # noqa: F401
from datafree.batches.ema_generator import EMAGeneratorBatches  # noqa: F401
from datafree.batches.fresh import FreshBatches  # noqa: F401
from datafree.batches.pool import ImagePool, pooled_updates  # noqa: F401
from datafree.batches.replay import ReplayBatches  # noqa: F401
