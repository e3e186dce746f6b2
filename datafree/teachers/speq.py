"""SPEQ's self-teacher (Boo et al., "Stochastic Precision Ensemble: Self-Knowledge Distillation for Quantized
Deep Neural Networks", AAAI 2021): the student's own weights, run at random activation precisions.

    [teacher]
    kind = "speq"
    arch = "lenet5"                       # the real teacher: the generator inverts it, as kind "single" does
    params = {seed = -1}                  # choices: the paper's draw (the target width or higher, or float)

    [[student.wrap]]
    name = "quantize"
    params = {bits = 4, act_bits = 4}     # the low-precision student (act_bits > 0: SPEQ varies them)

    [[distill]]
    name = "speq"                         # cosine(student's soft labels, the self-teacher's)
    weight = 1.0

The teacher of SPEQ shares the student's parameters: for each batch, every layer that quantizes its input
activations (the ``quantize`` wrapper's layers, ``act_bits > 0``) gets a bit width drawn uniformly at random from
its target width (its own ``act_bits``) and every higher width up to 8 bits, or full precision (0), independently
per layer (``params.choices = [...]``: one fixed list for every layer instead, e.g. ``[2, 3, 4, 5, 6, 7, 8, 0]``, the
draw this module used before, which lets a 4-bit student's teacher run layers at 2 or 3 bits), and that forward's logits are the soft targets
(no gradient; evaluation mode, so BatchNorm uses its running statistics and none are updated). Because the
draws change every batch, the targets are an ensemble over precisions ("stochastic ensemble KD"); the
student's own forward stays at its ``act_bits``.

Data-free, the generator still inverts the REAL teacher (``teacher.arch`` / ``checkpoint``, exactly as
``kind = "single"``; its statistics terms read that teacher), and the real teacher's logits still reach the
losses: ``[[distill]] kd`` beside ``speq`` adds SPEQ's term to KD (the usual way to use it, docs/methods.md), ``speq``
alone replaces it. The self-teacher's logits reach losses as the feature ``"self/logits"``.

Draw j uses ``torch.Generator().manual_seed(seed * 1_000_003 + j)``; the draw counter j is resumable state, so
a resumed run draws the same widths as an uninterrupted one. ``seed = -1``: ``train.seed``. Targets come with
their batch: with fresh student batches (the default preset) they are the current weights'; a replayed or
reused batch keeps the targets of the step it was made in.

Paper vs here: the paper draws each layer's activation precision from the target low precision and higher ones;
which higher widths and with what probabilities its abstract does not say: uniform over target..8 bits and float is
our reading. Weights stay as the wrapper quantizes them in both forwards (the paper varies activation precision
only).
"""

from __future__ import annotations

import torch
from torch import nn

from datafree.config import ConfigError
from datafree.nets.features import NetOutput, logits_of
from datafree.nets.spec import ImageSpec
from datafree.teachers.base import TargetSource, TeacherSource, register_teacher
from datafree.teachers.single import SingleTeacher

SELF_LOGITS = "self/logits"


def activation_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose input precision a forward can change (an ``act_bits`` > 0 attribute), in module order."""
    return [m for m in net.modules() if getattr(m, "act_bits", 0)]


class SelfTeacher(TargetSource):
    """The student at random activation precisions: the source of the student's targets under SPEQ."""

    def __init__(self, real: TeacherSource, choices: list[int] | None, seed: int):
        super().__init__()
        self.__dict__["real"] = real  # not a submodule: the real teacher is the outer source's own network
        self.__dict__["net"] = None  # the student, bound by build before the losses are set up
        self.choices, self.seed, self.draws = (None if choices is None else list(choices)), seed, 0
        self.layers: list[nn.Module] = []

    def bind(self, net: nn.Module) -> None:
        layers = activation_layers(net)
        if not layers:
            raise ConfigError("teacher kind \"speq\" varies the student's activation precision, but no student layer "
                              "quantizes its activations; add [[student.wrap]] name = \"quantize\" with params "
                              "{act_bits = 4} (or another width 2..8)")  # fmt: skip
        self.__dict__["net"], self.layers = net, layers

    def options(self, layer: nn.Module) -> list[int]:
        """The widths a layer may be drawn at: ``choices`` as given, or (``choices`` None, the paper's setting) the
        layer's own target width and every higher one up to 8 bits, and float."""
        if self.choices is not None:
            return self.choices
        return [*range(int(layer.act_bits), 9), 0]

    def draw(self) -> list[int]:
        """The next per-layer bit widths (0 = float), from the seed and the draw counter; each uniform over its
        layer's :meth:`options`."""
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.draws)
        self.draws += 1
        options = [self.options(layer) for layer in self.layers]
        picks = (torch.rand(len(self.layers), generator=rng) * torch.tensor([len(o) for o in options])).long().tolist()
        return [o[i] for o, i in zip(options, picks)]

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> NetOutput:
        return self.extend(x, self.real(x))

    @torch.no_grad()
    def extend(self, x: torch.Tensor, out: NetOutput) -> NetOutput:
        """The real teacher's output for ``x`` (already computed, e.g. by the generator's step) plus ``self/logits``."""
        net, own = self.net, [m.act_bits for m in self.layers]
        was_training = net.training
        try:
            for layer, bits in zip(self.layers, self.draw()):
                layer.act_bits = bits
            net.eval()
            logits = logits_of(net(x))
        finally:
            for layer, bits in zip(self.layers, own):
                layer.act_bits = bits
            net.train(was_training)
        return NetOutput(out.logits, {**out.features, SELF_LOGITS: logits.detach()})

    def tap(self, names: list[str]) -> None:
        """The real teacher is tapped once, by the outer source (this one adds only ``self/logits``)."""


@register_teacher("speq")
class SPEQTeacher(SingleTeacher):
    """A ``single`` teacher for the generator and the real targets, plus the self-teacher for the student."""

    def __init__(self, net: nn.Module, spec: ImageSpec, checkpoint: str | None = None, feature_layer: str | None = None,
                 choices: list[int] | None = None, seed: int = 0, stats: str | None = None):  # fmt: skip
        super().__init__(net, spec, checkpoint, feature_layer, stats)
        if choices is not None and (not choices or any(not isinstance(c, int) or not (c == 0 or 2 <= c <= 8)
                                                       for c in choices)):  # fmt: skip
            raise ConfigError(f"teacher.params.choices: bit widths 2..8 or 0 (float), at least one; got {choices!r} "
                              "(leave it out for the paper's draw: each layer's target width or higher, or float)")
        self.self_teacher = SelfTeacher(self, choices, seed)

    @classmethod
    def from_config(cls, config, spec: ImageSpec) -> "SPEQTeacher":
        params = dict(config.teacher.params)
        unknown = sorted(set(params) - {"choices", "seed"})
        if unknown:
            raise ConfigError(f"teacher kind \"speq\" takes params choices and seed; unknown: {unknown}")
        seed = int(params.get("seed", -1))
        single = SingleTeacher.from_config(config, spec)
        return cls(single.nets[0], spec, config.teacher_checkpoint, config.teacher.feature_layer or None,
                   params.get("choices"), config.train.seed if seed < 0 else seed, config.teacher.stats or None)  # fmt: skip

    def bind_student(self, net: nn.Module) -> None:
        self.self_teacher.bind(net)

    def for_student(self) -> SelfTeacher:
        return self.self_teacher

    def tap(self, names: list[str]) -> None:
        super().tap([n for n in names if n != SELF_LOGITS])

    def feature_shapes(self, names: list[str]) -> dict[str, tuple[int, ...]]:
        shapes = super().feature_shapes([n for n in names if n != SELF_LOGITS])
        return {**shapes, **({SELF_LOGITS: (self.spec.num_classes,)} if SELF_LOGITS in names else {})}

    def schedule_state(self) -> dict:
        return {"self_draws": self.self_teacher.draws}

    def load_schedule_state(self, state: dict) -> None:
        self.self_teacher.draws = int(state.get("self_draws", 0))
