"""FEED's teacher side (Park & Kwak, 2019): several trained networks, possibly of different architectures.

    [teacher]
    kind = "ensemble"
    members = [{arch = "lenet5", checkpoint = "a/teacher.safetensors"},
               {arch = "vgg_bn", checkpoint = "b/teacher.safetensors", stats = "b/my.stats.safetensors"}]

The student's KD target and the generator's class terms use the ensemble's logits, the mean of the members'
(z = (1/M) sum_m z_m, so one-hot and entropy act on the averaged prediction). Each member's features are
namespaced ``"m<i>/<tap>"``: DAFL's activation term averages the members' penultimate features, and the
statistics terms read each member's own reference (its BatchNorm layers, else ``stats``, else the file beside its
checkpoint), summed over all members' layers (DeepInversion's form) or averaged over them (``normalized``:
each layer counts once, so a member with more BatchNorm layers weighs more). The ``feed`` loss (datafree/distill/feed.py) matches the student to every member's
feature map. Optional member keys: ``stats``, ``feature_layer`` (penultimate tap for the activation term), ``seed`` (what
``train_teacher.py`` trains the member with: one command trains every member).
"""

from __future__ import annotations

from datafree.config import ConfigError
from datafree.nets.netcheck import load_network
from datafree.nets.spec import ImageSpec
from datafree.teachers.base import Member, register_teacher
from datafree.teachers.mean_logits import MeanLogitsTeacher

MEMBER_KEYS = {"arch", "checkpoint", "stats", "feature_layer", "seed"}  # seed: train_teacher.py's, for this member


@register_teacher("ensemble")
class EnsembleTeacher(MeanLogitsTeacher):
    @classmethod
    def from_config(cls, config, spec: ImageSpec) -> "EnsembleTeacher":
        members = config.teacher.members
        if len(members) < 2:
            raise ConfigError("[teacher] kind = \"ensemble\" needs members = [{arch = ..., checkpoint = ...}, ...] with "
                              f"at least two networks; got {members!r}")  # fmt: skip
        for i, m in enumerate(members):
            if not {"arch", "checkpoint"} <= set(m) or set(m) - MEMBER_KEYS:
                raise ConfigError(f"[teacher] members[{i}] = {m!r}: needs arch and checkpoint; optional keys: stats, "
                                  "feature_layer, seed")  # fmt: skip
        nets = [Member(f"m{i}/", load_network(m["arch"], m["checkpoint"], spec, f"teacher member {i} ({m['arch']})"),
                       m["checkpoint"], m.get("stats")) for i, m in enumerate(members)]  # fmt: skip
        return cls(nets, spec, [m.get("feature_layer") for m in members])
