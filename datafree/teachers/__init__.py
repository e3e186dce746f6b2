"""Teacher sources by kind. A new kind is one file with ``@register_teacher("kind")`` plus its import line below."""

from datafree.teachers.base import (LogitsOf, Member, TeacherSource, freeze, list_teachers,  # noqa: F401
                                    register_teacher, teacher_class)  # fmt: skip
from datafree.teachers import ensemble, mean_logits, route, single, speq  # noqa: F401  (registration)
from datafree.teachers.single import SingleTeacher  # noqa: F401
