"""Loop callbacks: the built-in ones every run has, and the registered ones a recipe lists (``[[callbacks]]``).

A new callback is one file with ``@register_callback("name")`` plus its import line below
(datafree/callbacks/base.py says what a callback may do and in which order they run).
"""

from datafree.callbacks.base import (EVERY_RUN, LIST_CLASSES_UP_TO, Callback, CallbackContext, LabelFn, Loop,  # noqa: F401
                                     build_callbacks, chain_labels, list_callbacks, name_classes, per_class_field,
                                     register_callback, steps_without_student)  # fmt: skip
from datafree.callbacks import blend, ema, lr_restart, precise_bn, quota, warmup  # noqa: F401  (registration)
from datafree.callbacks.blend import ClassBlend  # noqa: F401
from datafree.callbacks.budget import Budget, BudgetPlan, BudgetReplan, Deadline  # noqa: F401
from datafree.callbacks.coverage import ClassCoverage  # noqa: F401
from datafree.callbacks.ema import EMA  # noqa: F401
from datafree.callbacks.precise_bn import PreciseBatchNorm  # noqa: F401
from datafree.callbacks.quota import ClassQuota  # noqa: F401
from datafree.callbacks.rotation import RotatingLabels, images_per_class, label_order  # noqa: F401
from datafree.callbacks.warmup import WarmUp  # noqa: F401
from datafree.callbacks.wrapper_hooks import WrapperHooks, wrapper_callbacks  # noqa: F401
