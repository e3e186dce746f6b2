"""The teacher as the loop sees it: frozen network(s) behind one small protocol, registered by kind.

A teacher source gives, for a batch of images, the logits and the features the objectives asked for
(``forward(x) -> NetOutput``; with several networks the keys are namespaced ``"<member>/<tap>"``), and
tells the objectives what they need to know once: the penultimate taps (DAFL's activation term), the shapes
of any tap, its members (each network with its checkpoint, for feature statistics), the networks to
evaluate. ``set_progress(fraction)`` is called at the start of every step (a route schedule switches
anchors there); ``schedule_state``/``load_schedule_state`` hold whatever such a schedule must resume with.

The loop has two roles, the teacher the generator inverts and the teacher that gives the student its
targets: the same source by default (then ONE forward per batch serves both), two when a method needs
them apart (``TeacherSource.for_student``).

A new kind is one file with ``@register_teacher("kind")`` on a subclass that implements ``from_config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from datafree.config import ConfigError
from datafree.nets.features import FeatureTaps, NetOutput, penultimate_tap
from datafree.nets.fold import folded_copy
from datafree.nets.netcheck import check_network, memory_format_of
from datafree.registry import Registry
from datafree.nets.spec import ImageSpec

@dataclass
class Member:
    """One network of a source: its feature namespace ("" for a lone teacher), the network, its checkpoint, and
    its recorded feature statistics when they are not beside the checkpoint (``<checkpoint>.stats.safetensors``)."""

    prefix: str
    net: nn.Module
    checkpoint: str | None = None
    stats: str | None = None


class TargetSource(nn.Module):
    """What gives the student its targets (``TeacherSource.for_student()``): a teacher source, or a module that
    derives them otherwise (SPEQ's self-teacher, the student at random precisions)."""

    def forward(self, x: torch.Tensor) -> NetOutput:
        raise NotImplementedError

    def extend(self, x: torch.Tensor, out: NetOutput) -> NetOutput | None:
        """The student's targets for ``x`` from the inverted source's output ``out`` on the same images, where this
        source derives them without a forward of its own (SPEQ's self-teacher adds its logits); None: a full
        forward is needed."""
        return None

    def labeller(self, taps: list[str] | tuple[str, ...] = ()) -> nn.Module | None:
        """A faster module for the no-grad forwards that label the student's extra batches; None: this one."""
        return None

    def tap(self, names: list[str]) -> None:
        """Hook these (namespaced) layers, for the student's losses."""


class TeacherSource(TargetSource):
    """Frozen networks + forward hooks. Subclasses set ``self._members`` and may override ``combine``."""

    fixed_weights = True  # False: the members' weights change during a run (a route's anchors): no folded copy

    def __init__(self, members: list[Member], spec: ImageSpec, feature_layers: list[str | None] | None = None):
        super().__init__()
        self.spec = spec
        self._members = members
        self.nets = nn.ModuleList([m.net for m in members])  # registered: .to(), prepare, compile see them
        self._flags = [freeze(m.net) for m in members]
        self._formats = [memory_format_of(m.net) for m in members]
        layers = feature_layers or [None] * len(members)
        self.penultimate_taps = [m.prefix + (layer or penultimate_tap(m.net)) for m, layer in zip(members, layers)]
        self._taps: list[FeatureTaps] = []
        self.tap(self.penultimate_taps)

    # ---- the protocol ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> NetOutput:
        outputs = [taps.run(x) for taps in self._taps]
        features = {m.prefix + k: v for m, out in zip(self._members, outputs) for k, v in out.features.items()}
        return NetOutput(self.combine([out.logits for out in outputs]), features)

    def combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """The source's logits from its members' (one member: its own)."""
        return logits[0]

    def tap(self, names: list[str]) -> None:
        """Hook these (namespaced) layers, beside the penultimate ones; replaces earlier hooks."""
        self.remove_hooks()
        wanted = list(dict.fromkeys([*self.penultimate_taps, *names]))
        for m in self._members:
            self._taps.append(FeatureTaps(m.net, _local(m, wanted)))

    def feature_shapes(self, names: list[str]) -> dict[str, tuple[int, ...]]:
        """Per-sample shapes of (namespaced) taps, by a dry forward of each member."""
        own = [n for n in names if n.startswith("self/")]
        if own:
            raise ConfigError(f"{own} are the student's own targets (a self-teacher's), which teacher kind "
                              f"{getattr(self, 'registry_name', type(self).__name__)!r} does not give; set [teacher] "
                              "kind = \"speq\" or leave out the loss that reads them")  # fmt: skip
        shapes = {}
        for m in self._members:
            for k, v in check_network(m.net, self.spec, "teacher", _local(m, names)).items():
                shapes[m.prefix + k] = v
        return shapes

    def members(self) -> list[Member]:
        return list(self._members)

    def networks(self) -> dict[str, nn.Module]:
        """Classifiers (images -> logits) to evaluate for the report, the source itself first."""
        own = {"teacher": self._members[0].net} if len(self._members) == 1 else {"teacher": LogitsOf(self)}
        return {**own, **({m.prefix.rstrip("/"): m.net for m in self._members} if len(self._members) > 1 else {})}

    def labeller(self, taps: list[str] | tuple[str, ...] = ()) -> nn.Module | None:
        """images -> NetOutput (logits, and the namespaced ``taps`` a student loss reads) for the no-grad forwards
        that label the student's batches: the members with BatchNorm folded (datafree/nets/fold.py), combined as the
        source combines them; None (use the source itself) when a member cannot be folded, has nothing to fold,
        or computes a tap differently once folded, or the weights change during a run."""
        if not self.fixed_weights:
            return None
        probe = torch.randn(4, self.spec.channels, self.spec.image_size, self.spec.image_size,
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
        folded, local = [], [_local(m, list(taps)) for m in self._members]
        for m, names in zip(self._members, local):
            device = next(iter(m.net.parameters()), torch.zeros(())).device
            layout = memory_format_of(m.net)
            net = folded_copy(m.net, probe.to(device).contiguous(memory_format=layout), taps=names)
            if net is None:
                return None
            folded.append(net)
        return FoldedSource(folded, self.combine, [m.prefix for m in self._members], local)

    def set_progress(self, fraction: float) -> None:
        """Called at the start of each step with step / steps."""

    def for_student(self) -> TargetSource:
        """The source that gives the student its targets (itself unless a method needs them apart)."""
        return self

    def bind_student(self, net: nn.Module) -> None:
        """Called once with the (wrapped) student before the losses are set up: a self-teacher (SPEQ) keeps it."""

    def callbacks(self) -> list:
        """Loop callbacks the source needs (e.g. a route schedule that watches the student's loss)."""
        return []

    def schedule_state(self) -> dict:
        return {}

    def load_schedule_state(self, state: dict) -> None:
        pass

    def train(self, mode: bool = True) -> "TeacherSource":
        """Stay in eval mode whatever the caller asks: BN statistics of a teacher never move."""
        return super().train(False)

    def remove_hooks(self) -> None:
        for taps in self._taps:
            taps.remove()
        self._taps = []

    def release(self) -> None:
        """Give the networks back as they came: hooks removed, requires_grad flags, train mode, memory format restored."""
        self.remove_hooks()
        for m, (flags, was_training), layout in zip(self._members, self._flags, self._formats):
            m.net.to(memory_format=layout)
            for p, flag in zip(m.net.parameters(), flags):
                p.requires_grad_(flag)
            m.net.train(was_training)

    @classmethod
    def from_config(cls, config, spec: ImageSpec) -> "TeacherSource":  # pragma: no cover - abstract
        raise NotImplementedError


def _local(member: Member, names: list[str]) -> list[str]:
    """The member's own tap names among namespaced ones ("m0/conv1" -> "conv1"; a lone member takes un-prefixed)."""
    return [n[len(member.prefix):] for n in names if n.startswith(member.prefix) and (member.prefix or "/" not in n)]


class FoldedSource(nn.Module):
    """A source's members with BatchNorm folded, combined by the source's rule; gives logits and the tapped
    features (namespaced by each member's prefix, as the source's own forward names them)."""

    def __init__(self, nets: list[nn.Module], combine: Callable[[list[torch.Tensor]], torch.Tensor],
                 prefixes: list[str], taps: list[list[str]]):  # fmt: skip
        super().__init__()
        self.nets, self.combine, self.prefixes = nn.ModuleList(nets), combine, prefixes
        self._taps = [FeatureTaps(net, names) for net, names in zip(nets, taps)]

    def forward(self, x: torch.Tensor) -> NetOutput:
        outputs = [taps.run(x) for taps in self._taps]
        features = {p + k: v for p, out in zip(self.prefixes, outputs) for k, v in out.features.items()}
        return NetOutput(self.combine([out.logits for out in outputs]), features)

    def train(self, mode: bool = True) -> "FoldedSource":
        return super().train(False)  # folded BatchNorm is eval-mode BatchNorm: never train mode


class LogitsOf(nn.Module):
    """images -> logits of a source (for evaluation code that expects a classifier)."""

    def __init__(self, source: TeacherSource):
        super().__init__()
        self.source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.source(x).logits


def freeze(net: nn.Module) -> tuple[list[bool], bool]:
    """Eval mode and no parameter gradients; returns what it changed so ``release`` can restore it."""
    flags = [p.requires_grad for p in net.parameters()]
    was_training = net.training
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return flags, was_training


TEACHERS = Registry("teacher kind", "kinds")


def register_teacher(kind: str) -> Callable[[type[TeacherSource]], type[TeacherSource]]:
    """Class decorator: ``@register_teacher("ensemble")`` makes ``[teacher] kind = "ensemble"`` work."""
    return TEACHERS.register(kind, kind=kind)


def list_teachers() -> list[str]:
    return TEACHERS.names()


def teacher_class(kind: str) -> type[TeacherSource]:
    return TEACHERS.get(kind)
