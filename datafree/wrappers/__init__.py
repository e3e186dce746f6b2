"""Student wrappers by name. A new wrapper is one file with ``@register_student_wrapper`` plus its import line."""

from datafree.wrappers.base import (StudentWrapper, create_student_wrapper, list_student_wrappers,  # noqa: F401
                                    register_student_wrapper)  # fmt: skip
from datafree.wrappers import clip, gates, quantize  # noqa: F401  (registration)
