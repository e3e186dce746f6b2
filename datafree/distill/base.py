"""The contract every distillation loss follows, and the registry that finds losses by name.

A loss is an ``nn.Module`` with one ``forward(student, teacher) -> scalar`` where both arguments are
:class:`datafree.nets.features.NetOutput` (logits + the features the loss asked for, by layer name).
It declares the layers it needs in ``student_layers`` / ``teacher_layers`` (exposed as ``student_taps`` /
``teacher_taps``); the trainer taps exactly those.
It may own trainable parameters (regressors, thresholds): they are trained with the student,
checkpointed with it and wrapped for DDP together with it (``param_groups`` gives them their own LR scale
or weight decay). A class attribute ``benchmark`` holds the settings ``runs/compare_losses.py`` uses for it. Losses never see optimizers or the teacher's
parameters, and the trainer never sees a loss by name.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from datafree.nets.features import NetOutput
from datafree.registry import Registry

class DistillLoss(nn.Module):
    """Base class: set ``student_layers``/``teacher_layers`` in ``__init__`` and implement ``forward``."""

    student_layers: list[str] | None = None  # layers this loss reads; logits-only losses leave them None
    benchmark: dict | None = None  # {"weight": w, "params": {...}}: runs/compare_losses.py's entry (None: not compared)
    teacher_layers: list[str] | None = None
    uses_default_taps: bool = False  # True: layers the recipe leaves out come from the nets' ``default_taps``

    @classmethod
    def default_layers(cls, params: dict, student_net: nn.Module, members: list) -> dict:
        """``params`` with the layers the recipe left out filled in, before the loss is built. ``members`` are the
        teacher source's (``prefix``, ``net``) members. Pairwise feature losses take both nets' whole
        ``default_taps`` (the first member's, namespaced); a loss with other needs overrides this."""
        if not cls.uses_default_taps:
            return params
        first = members[0]
        for key, net, prefix in (("student_layers", student_net, ""), ("teacher_layers", first.net, first.prefix)):
            if params.get(key) is None:
                params[key] = [prefix + tap for tap in declared_taps(net, cls.registry_name, key)]
        return params

    @property
    def student_taps(self) -> tuple[str, ...]:
        """The student layers the trainer must tap for this loss."""
        return tuple(self.student_layers or ())

    @property
    def teacher_taps(self) -> tuple[str, ...]:
        return tuple(self.teacher_layers or ())

    def setup(self, student_shapes: dict[str, tuple[int, ...]], teacher_shapes: dict[str, tuple[int, ...]]) -> None:
        """Called once before training with per-sample feature shapes, e.g. to build regressors or reject a mismatch."""

    def param_groups(self) -> list[dict]:
        """Parameter groups of the loss's own parameters that need their own LR scale or weight decay.

        Each: ``{"name": ..., "params": [...], "lr_scale": ..., "weight_decay": ...}``; parameters no group
        claims are trained with the student's settings (see :mod:`datafree.optim`).
        """
        return []

    def forward(self, student: NetOutput, teacher: NetOutput) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def declared_taps(net: nn.Module, loss: str, key: str) -> list[str]:
    """A network's ``default_taps``, or an error that says which recipe key to set instead."""
    default = getattr(net, "default_taps", None)
    if not default:
        raise ValueError(f"loss {loss!r} needs feature layers but {type(net).__name__} declares no default_taps; set "
                         f"params.{key} in the recipe (list layers with `python -m datafree.models <arch>`)")  # fmt: skip
    return list(default)


LOSSES = Registry("distillation loss", "losses")


def register_loss(name: str) -> Callable[[type[DistillLoss]], type[DistillLoss]]:
    """Class decorator: ``@register_loss("kd")`` makes the loss available to recipes by that name."""
    return LOSSES.register(name)


def list_losses() -> list[str]:
    return LOSSES.names()


def loss_class(name: str) -> type[DistillLoss]:
    return LOSSES.get(name)


def create_loss(name: str, **params) -> DistillLoss:
    """Build a registered loss by name; unknown names and unknown parameters fail with the valid choices."""
    return LOSSES.create(name, **params)
