"""One frozen network: the teacher of DAFL and of most recipes (``[teacher] kind = "single"``, the default)."""

from __future__ import annotations

from torch import nn

from datafree.nets.netcheck import load_network
from datafree.nets.spec import ImageSpec
from datafree.teachers.base import Member, TeacherSource, register_teacher


@register_teacher("single")
class SingleTeacher(TeacherSource):
    def __init__(self, net: nn.Module, spec: ImageSpec, checkpoint: str | None = None, feature_layer: str | None = None,
                 stats: str | None = None):  # fmt: skip
        super().__init__([Member("", net, checkpoint, stats)], spec, [feature_layer])

    @classmethod
    def from_config(cls, config, spec: ImageSpec) -> "SingleTeacher":
        """``teacher.arch`` with the weights of ``teacher.checkpoint`` (its recorded statistics: ``teacher.stats``)."""
        net = load_network(config.teacher.arch, config.teacher_checkpoint, spec)
        return cls(net, spec, config.teacher_checkpoint, config.teacher.feature_layer or None, config.teacher.stats or None)
