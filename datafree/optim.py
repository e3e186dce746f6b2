"""Optimizers from parameter groups and LR schedules: one factory for the data-free loop, teacher training and
offline KD, so a method adds a parameter group (own LR scale, own weight decay) without touching any of them.

A parameter group is a dict as ``torch.optim`` takes it, plus an optional ``lr_scale`` (multiplies the base LR)
and ``name`` (for logs). Groups that leave ``weight_decay`` out get the recipe's. A group with ``own_update``
true is left out: its owner updates those parameters itself (e.g. a proximal step on channel gates).
"""

from __future__ import annotations

import math
from typing import Iterable

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


class LRMultiplier:
    """Multiplier of the base LR at a step. ``step``: x gamma from each milestone (a fraction of total_steps) on.

    An object of plain values rather than a closure, so the scheduler's state (saved by datafree.io.trainstate)
    carries ``total_steps``: a budgeted run that re-plans its length mid-run (datafree.callbacks.BudgetReplan)
    resumes with the plan its checkpoint was written under. Schedulers are stepped by hand, once per step on
    every process (they are never ``prepare``d).
    """

    def __init__(self, schedule: str, total_steps: int, milestones: Iterable[float] = (), gamma: float = 0.1):
        if schedule not in ("constant", "step", "cosine"):
            raise ValueError(f"unknown LR schedule {schedule!r}; use constant, step or cosine")
        self.schedule, self.total_steps, self.milestones, self.gamma = schedule, total_steps, list(milestones), gamma

    def __call__(self, step: int) -> float:
        if self.schedule == "step":
            return self.gamma ** sum(step >= m * self.total_steps for m in self.milestones)
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, self.total_steps) / self.total_steps))
        return 1.0


def make_schedule(optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, milestones: Iterable[float] = (),
                  gamma: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRMultiplier(schedule, total_steps, milestones, gamma))


def set_total_steps(scheduler: torch.optim.lr_scheduler.LambdaLR, total_steps: int) -> None:
    """Stretch (or shrink) a :func:`make_schedule` schedule to ``total_steps``; the current LR follows at once."""
    for multiplier in scheduler.lr_lambdas:
        multiplier.total_steps = max(1, total_steps)
    for group, base, multiplier in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * multiplier(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def total_steps_of(scheduler: torch.optim.lr_scheduler.LambdaLR) -> int:
    """The step count a :func:`make_schedule` schedule spans now."""
    return scheduler.lr_lambdas[0].total_steps
