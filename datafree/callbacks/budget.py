"""The wall-time budget (``train.max_minutes``): re-plan the run's length from its own steps, and stop it before the
budget is overrun. ``budget`` is a registered callback every run has (``EVERY_RUN``); it acts only in a run the
pipeline planned a budget for (``BudgetPlan``, handed over in the callbacks' context), and a recipe that lists it
sets when it re-plans (``replan_at``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from datafree.callbacks.base import Callback, CallbackContext, register_callback
from datafree.config import ConfigError


@dataclass
class BudgetPlan:
    """A budgeted run's plan, made by datafree/pipeline.py before step 0 from its timing of a few steps."""

    deadline: float  # time.perf_counter() by which the run must have written its results
    reserve_s: float  # what the deadline keeps back: one more step, the last evaluations, the report
    replan_reserve_s: float  # ... and a little more when a re-plan sizes the rest of the run
    first_plan: int  # train.steps as planned
    eval_seconds: float  # one evaluation of the student
    eval_every: int
    most_steps: int | None = None  # train.budget_mode = "cap": no plan exceeds the recipe's steps
    on_replan: Callable[[int], None] | None = None  # told the new step count (the pipeline rewrites config.json)


@register_callback("budget")
class Budget(Callback):
    """The wall-time budget of a run with ``train.max_minutes``: a :class:`BudgetReplan` at ``replan_at`` fractions
    of the plan (none where a callback keeps the planned step count, e.g. a warm-up, or ``replan_at = []``) and a
    :class:`Deadline`. Inert without a plan (``train.max_minutes = 0``, a resumed run, the budget's own timing)."""

    order = 99  # last: a re-plan moves train.steps after every other callback's start of the step

    def __init__(self, replan_at: list[float] | tuple[float, ...] = (0.1, 0.5)):
        fractions = list(replan_at) if isinstance(replan_at, (list, tuple)) else None
        if fractions is None or any(not isinstance(f, (int, float)) or not 0.0 < f < 1.0 for f in fractions):
            raise ConfigError(f"[[callbacks]] \"budget\": replan_at is a list of fractions of the plan in (0, 1) "
                              f"(e.g. [0.1, 0.5]; [] for no re-plan), got {replan_at!r}")  # fmt: skip
        self.fractions = tuple(sorted(float(f) for f in fractions))
        self.replan: BudgetReplan | None = None
        self.deadline: Deadline | None = None

    def attach(self, context: CallbackContext) -> None:
        plan = context.budget
        if plan is None:
            return
        self.deadline = Deadline(plan.deadline, plan.reserve_s)
        if self.fractions:
            self.replan = BudgetReplan(plan.deadline, plan.replan_reserve_s, plan.first_plan, plan.eval_seconds,
                                       plan.eval_every, self.fractions, on_replan=plan.on_replan,
                                       most_steps=plan.most_steps)  # fmt: skip

    def setup(self, loop) -> None:
        if loop.fixed_plan:  # its steps are a fraction of the first plan: the run keeps it
            self.replan = None

    def on_step_start(self, loop, step: int, progress: float) -> None:
        if self.replan is not None:
            self.replan.on_step_start(loop, step, progress)

    def should_stop(self, loop) -> bool:
        if self.deadline is not None and self.deadline.should_stop(loop):
            self.stop_reason = self.deadline.stop_reason
            return True
        return False

    def summary(self) -> dict:
        return {**(self.replan.summary() if self.replan else {}), **(self.deadline.summary() if self.deadline else {})}


class Deadline(Callback):
    """End the loop before a wall-time budget (``train.max_minutes``) is overrun.

    The step count is fixed before step 0 from a short timing (so the schedules are exact); a machine that then
    runs slower than it timed (a shared CPU moves 5-15% within minutes) would push the run past its budget.
    This stops it at the step after which ``reserve_s`` (one more step, the last evaluations, the report) would
    no longer fit before ``deadline`` (a ``time.perf_counter()`` value). On several processes they agree (one
    all-reduce of a flag per step), so every rank stops at the same step.
    """

    order = 95  # appended by the pipeline after the recipe's callbacks
    stop_reason = "train.max_minutes would be overrun (the machine ran slower than it timed before step 0)"

    def __init__(self, deadline: float, reserve_s: float, clock: Callable[[], float] = time.perf_counter):
        self.deadline, self.reserve_s, self.clock, self.stopped_at = deadline, reserve_s, clock, None

    def should_stop(self, loop) -> bool:
        late = self.clock() + self.reserve_s > self.deadline
        if loop.accelerator.num_processes > 1:
            flag = torch.tensor([float(late)], device=loop.accelerator.device)
            late = bool(loop.accelerator.reduce(flag, reduction="sum").item() > 0)
        if late:
            self.stopped_at = loop.progress.step
        return late

    def summary(self) -> dict:
        return {} if self.stopped_at is None else {"stopped_at_deadline": self.stopped_at}


class BudgetReplan(Callback):
    """Re-plan ``train.steps`` at ``fractions`` of the plan (10% and 50%), from the steps the run has made so far.

    ``train.max_minutes`` fixes the step count before step 0 from a timing of a few steps, which on a shared CPU
    is off by up to 20% either way (the zoo's MobileNet: timed 1.086 s, ran at 0.92 s, and ended 100 s early).
    At step ``R`` (a fraction of the plan then in force) the seconds per step so far (logs and checkpoints
    included; each evaluation costed at ``eval_seconds`` every ``eval_every`` steps) give the steps that fit
    before ``deadline`` less ``reserve_s``; the loop, its LR schedules and every progress-scheduled weight are
    stretched to it there (``DataFreeTrainer.set_total_steps``: the cosine's multiplier moves by ~1% of its range
    at 10%, by a few % at 50%). The second re-plan catches a machine whose speed changed after the first 10%
    (with one re-plan, six of twelve zoo runs ended 544-564 s into their 600, one was cut by ``Deadline``,
    which still guards the rest). On several processes they take the smallest count. ``on_replan(steps)`` is
    told (the pipeline rewrites config.json). A checkpoint carries its plan (the schedules' state), so a resumed
    run continues under the plan it was written with (and does not re-plan). ``most_steps`` (``train.budget_mode =
    "cap"``): no plan exceeds it, so a machine fast enough runs exactly the recipe's steps.
    """

    order = 95

    def __init__(self, deadline: float, reserve_s: float, first_plan: int, eval_seconds: float = 0.0,
                 eval_every: int = 0, fractions: tuple[float, ...] = (0.1, 0.5),
                 on_replan: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter, most_steps: int | None = None):  # fmt: skip
        self.deadline, self.reserve_s, self.clock, self.on_replan = deadline, reserve_s, clock, on_replan
        self.most_steps = most_steps
        self.eval_seconds, self.eval_every = eval_seconds, eval_every
        self.fractions = sorted(fractions)
        self.plans = [first_plan]
        self.at_step = max(1, round(self.fractions[0] * first_plan))

    def on_step_start(self, loop, step: int, progress: float) -> None:
        if step != self.at_step:
            return
        evals = step // self.eval_every if self.eval_every else 0  # made so far; the rest costed per step below
        seconds_per_step = (loop.progress.elapsed_s - evals * self.eval_seconds) / step
        seconds_per_step += self.eval_seconds / self.eval_every if self.eval_every else 0.0
        left = self.deadline - self.clock() - self.reserve_s
        steps = step + max(1, int(left / seconds_per_step))
        if self.most_steps is not None:
            steps = min(steps, self.most_steps)
        if loop.accelerator.num_processes > 1:
            steps = int(loop.accelerator.gather(torch.tensor([steps], device=loop.accelerator.device)).min().item())
        self.plans.append(steps)
        made = len(self.plans) - 1  # re-plans made; the next one (if any) at its fraction of the new plan
        self.at_step = max(step + 1, round(self.fractions[made] * steps)) if made < len(self.fractions) else -1
        if steps != loop.config.steps:
            loop.accelerator.print(f"train.max_minutes: {seconds_per_step:.3f} s per step over the first {step} "
                                   f"steps -> train.steps {loop.config.steps} -> {steps}")  # fmt: skip
            loop.set_total_steps(steps)
            if self.on_replan is not None:
                self.on_replan(steps)

    def summary(self) -> dict:
        return {"steps_planned": self.plans}
