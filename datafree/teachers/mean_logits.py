"""Several frozen networks whose logits are averaged: the simplest ensemble (``[teacher] kind = "mean_logits"``).

    [teacher]
    kind = "mean_logits"
    members = [{arch = "lenet5", checkpoint = "a.safetensors"}, {arch = "lenet5", checkpoint = "b.safetensors"}]

logits(x) = (1/M) sum_m logits_m(x). Features are namespaced ``"m<i>/<tap>"``; DAFL's activation term
averages over the members' penultimate features; feature statistics are each member's own (BatchNorm or
the file recorded beside its checkpoint).
"""

from __future__ import annotations

import torch

from datafree.config import ConfigError
from datafree.nets.netcheck import load_network
from datafree.nets.spec import ImageSpec
from datafree.teachers.base import Member, TeacherSource, register_teacher


@register_teacher("mean_logits")
class MeanLogitsTeacher(TeacherSource):
    def combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(logits).mean(dim=0)

    @classmethod
    def from_config(cls, config, spec: ImageSpec) -> "MeanLogitsTeacher":
        members = config.teacher.members
        if len(members) < 2 or any(not {"arch", "checkpoint"} <= set(m) for m in members):
            raise ConfigError("[teacher] kind = \"mean_logits\" needs members = [{arch = ..., checkpoint = ...}, ...] "
                              f"with at least two networks; got {members!r}")  # fmt: skip
        nets = [Member(f"m{i}/", load_network(m["arch"], m["checkpoint"], spec, f"teacher member {i}"), m["checkpoint"])
                for i, m in enumerate(members)]  # fmt: skip
        return cls(nets, spec, [m.get("feature_layer") for m in members])
