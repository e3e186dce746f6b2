"""The generator's objective as a list of registered terms, the twin of the student's ``[[distill]]`` losses.

A term is an ``nn.Module`` with one ``forward(batch) -> scalar`` over a :class:`SynthBatch` (the images, the
teacher's output on them, the classes a conditional generator was asked for, the frozen student). It may load
a reference in ``setup(context)`` (BatchNorm statistics, a recorded file) and names the teacher layers it reads
in ``teacher_taps``. ``@register_synthesis_term("name")`` makes it a recipe entry::

    [[synthesis]]
    name = "feature_stats"
    weight = 1.0
    params = {layers = ["conv1", "conv2"]}

:class:`SynthesisObjective` sums ``weight(progress) * term`` in recipe order and logs each term under its
``log_name`` (``g_<name>`` unless the term says otherwise). The trainer never sees a term by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from datafree.distill.objective import scheduled_weight
from datafree.nets.features import NetOutput, image_moments
from datafree.registry import Registry
from datafree.nets.spec import ImageSpec

@dataclass
class SynthBatch:
    """One synthetic batch as the generator's terms see it."""

    images: torch.Tensor
    teacher: NetOutput
    labels: torch.Tensor | None = None  # the classes a conditional generator made the images for, or soft targets (n, K)
    student_logits: Callable[[torch.Tensor], torch.Tensor] | None = None  # student with frozen weights
    _moments: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, init=False, repr=False,
                                                                   compare=False)  # filled by image_moments

    def image_moments(self, tap: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image spatial means of the teacher's feature ``tap`` and of its square, (N, C) each: once per batch
        for every term that reads them (the pooled and the per-class feature priors share one pass per layer)."""
        if tap not in self._moments:
            self._moments[tap] = image_moments(self.teacher.features[tap])
        return self._moments[tap]

    def classes(self) -> torch.Tensor:
        """The class of each image: the one it was made for (a blend's main class), else the teacher's argmax."""
        if self.labels is None:
            return self.teacher.logits.detach().argmax(dim=1)
        return self.labels.argmax(dim=1) if self.labels.is_floating_point() else self.labels


@dataclass
class TermContext:
    """What a term may need once, before training: the teacher source, the images' spec, where it runs."""

    teacher: Any  # datafree.teachers.TeacherSource
    spec: ImageSpec
    device: torch.device | str = "cpu"
    reduce_sum: Callable[[torch.Tensor], torch.Tensor] | None = None  # sum over processes
    world_size: int = 1
    given: dict[str, Any] = field(default_factory=dict)  # references handed over by the Python call, by term name
    given_as: dict[str, str] = field(default_factory=dict)  # ...and the argument each came as, where not the term's name


class SynthesisTerm(nn.Module):
    """Base class: implement ``forward(batch)``; override ``setup`` and ``teacher_taps`` when needed."""

    log_name: str = ""  # defaults to "g_<registered name>"
    uses_student: bool = False  # True: G's loss goes through the student, so G is stepped before the student
    uses: str = ""  # what setup read beyond the teacher's weights (BatchNorm statistics, a recorded file): the report says it
    available: bool = True  # setup may set False (an optional term with nothing to read): build leaves it out...
    note: str = ""  # ...and logs why

    @property
    def teacher_taps(self) -> tuple[str, ...]:
        return ()

    @classmethod
    def recorded_in(cls, keys: set[str]) -> bool | None:
        """Whether a recorded statistics file with these keys holds what the term reads (None: it reads none).
        Programs that own the whole chain record the file again where a term's part is missing
        (:func:`datafree.supervised.ensure_for_recipe`): a file written before the term existed."""
        return None

    def setup(self, context: TermContext) -> None:
        """Called once before training (load references, check shapes against the teacher)."""

    def forward(self, batch: SynthBatch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


TERMS = Registry("synthesis term", "terms")


def register_synthesis_term(name: str, log_name: str | None = None) -> Callable[[type[SynthesisTerm]], type[SynthesisTerm]]:
    """Class decorator: ``@register_synthesis_term("tv")`` makes the term available to recipes by that name."""
    return TERMS.register(name, log_name=log_name or f"g_{name}")


def synthesis_term_class(name: str) -> type[SynthesisTerm]:
    """The registered class (its class-level facts, e.g. :meth:`SynthesisTerm.recorded_in`), without building it."""
    return TERMS.get(name)


def list_synthesis_terms() -> list[str]:
    return TERMS.names()


def create_synthesis_term(name: str, **params) -> SynthesisTerm:
    """Build a registered term; unknown names and parameters fail with the valid choices."""
    return TERMS.create(name, **params)


class SynthesisObjective(nn.Module):
    """sum_i weight_i(progress) * term_i(batch), in recipe order; returns (total, {log name: value})."""

    def __init__(self, terms: list[SynthesisTerm], weights: list[dict]):
        super().__init__()
        self.terms = nn.ModuleList(terms)
        self.weights = weights  # plain dicts: weight, schedule, end_weight, milestones, gamma
        self.names = [t.log_name for t in terms]
        self.notes: list[str] = []  # optional terms build left out, and why

    @property
    def uses(self) -> list[str]:
        """What the objective reads beyond the teacher's weights (and its input normalization), one line each."""
        return list(dict.fromkeys(term.uses for term in self.terms if term.uses))

    @property
    def uses_student(self) -> bool:
        return any(term.uses_student for term in self.terms)

    @property
    def teacher_taps(self) -> list[str]:
        return list(dict.fromkeys(tap for term in self.terms for tap in term.teacher_taps))

    def forward(self, batch: SynthBatch, progress: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total = batch.images.new_zeros((), dtype=torch.float32)
        values: dict[str, torch.Tensor] = {}
        for name, term, w in zip(self.names, self.terms, self.weights):
            value = term(batch)
            values[name] = value
            coefficient = scheduled_weight(progress=progress, **w)
            if coefficient != 0.0:
                total = total + coefficient * value
        return total, values
