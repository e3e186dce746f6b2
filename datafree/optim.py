"""Optimizers from parameter groups and LR schedules: one factory for the data-free loop, teacher training and
offline KD, so a method adds a parameter group (own LR scale, own weight decay) without touching any of them.

A parameter group is a dict as ``torch.optim`` takes it, plus an optional ``lr_scale`` (multiplies the base LR)
and ``name`` (for logs). Groups that leave ``weight_decay`` out get the recipe's. A group with ``own_update``
true is left out: its owner updates those parameters itself (e.g. a proximal step on channel gates).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch


def make_optimizer(name: str, groups: Iterable[dict] | Iterable[torch.nn.Parameter], lr: float, *,
                   momentum: float = 0.9, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                   nesterov: bool = False) -> torch.optim.Optimizer:  # fmt: skip
    """``adam`` or ``sgd`` over ``groups`` (parameters, or dicts with params/lr_scale/weight_decay/name)."""
    groups = list(groups)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    prepared = []
    for group in groups:
        group = dict(group)
        if group.pop("own_update", False):
            continue
        group["lr"] = lr * group.pop("lr_scale", 1.0)
        group.setdefault("weight_decay", weight_decay)
        group["params"] = list(group["params"])
        if group["params"]:
            prepared.append(group)
    if name == "sgd":
        return torch.optim.SGD(prepared, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name == "adam":
        return torch.optim.Adam(prepared, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use adam or sgd")


def lr_lambda(schedule: str, total_steps: int, milestones: Iterable[float] = (), gamma: float = 0.1) -> Callable[[int], float]:
    """Multiplier of the base LR at a step. ``step``: x gamma from each milestone (a fraction of total_steps) on.

    Schedulers are stepped by hand, once per step on every process (they are never ``prepare``d).
    """
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "step":
        bounds = [m * total_steps for m in milestones]
        return lambda step: gamma ** sum(step >= b for b in bounds)
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise ValueError(f"unknown LR schedule {schedule!r}; use constant, step or cosine")


def make_schedule(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, milestones: Iterable[float] = (),
                  gamma: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, total_steps, list(milestones), gamma))
