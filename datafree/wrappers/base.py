"""Student wrappers: what acts on the student between the model registry and the optimizer.

A wrapper (``[[student.wrap]] name = "..." params = {...}``) may
- change the network (``wrap``: replace layers by quantized or gated ones) before the losses see it;
- declare parameter groups (``param_groups``: own ``lr_scale``, own ``weight_decay``, a ``name``);
- add a penalty on the parameters (``penalty(net, progress)``: a scalar added to the student's loss, logged);
- act after every student optimizer step (``after_step(net, progress)``: a proximal step, a clamp), no grad;
- write a deployable artifact at the end of a run (``export(net, out_dir)``);
- learn the student's input shape before ``wrap`` (``configure(spec)``: for wrappers that trace the network);
- end the loop early (``should_stop(net)``, asked once per step), add values to each metrics line
  (``metrics(net)``), and keep resumable state (``state_dict`` / ``load_state_dict``: tensors and plain values,
  saved with the checkpoint when not empty).
A parameter group with ``own_update = True`` is left out of the optimizer: the wrapper updates those
parameters itself in ``after_step`` (their ``.grad`` is kept for it, reduced across processes by DDP).
Losses that own parameters declare groups the same way (``param_groups()`` on the loss).
A new wrapper is one file with ``@register_student_wrapper("name")`` plus its import line in __init__.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from datafree.registry import Registry

class StudentWrapper:
    """Base class: every hook is a no-op; override the ones the method needs."""

    def wrap(self, net: nn.Module) -> nn.Module:
        return net

    def param_groups(self, net: nn.Module) -> list[dict]:
        return []

    def penalty(self, net: nn.Module, progress: float) -> torch.Tensor | None:
        return None

    def after_step(self, net: nn.Module, progress: float) -> None:
        pass

    def export(self, net: nn.Module, out_dir: Path) -> None:
        pass

    def configure(self, spec) -> None:
        """The student's input (a datafree.nets.spec.ImageSpec), given before ``wrap``."""

    def should_stop(self, net: nn.Module) -> bool:
        return False

    def metrics(self, net: nn.Module) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


WRAPPERS = Registry("student wrapper", "wrappers")


def register_student_wrapper(name: str) -> Callable[[type[StudentWrapper]], type[StudentWrapper]]:
    return WRAPPERS.register(name)


def list_student_wrappers() -> list[str]:
    return WRAPPERS.names()


def create_student_wrapper(name: str, **params) -> StudentWrapper:
    return WRAPPERS.create(name, **params)
