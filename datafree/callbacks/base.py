"""Loop callbacks: code that acts at fixed points of the loop without the loop knowing what it is.

Hooks (all optional): ``setup(loop)`` once after ``accelerator.prepare``; ``on_step_start(loop, step,
progress)``; ``on_synthesized(loop, step, batch)`` after the generator's batch went through the teacher;
``on_student_update(loop, step, progress)`` after each student optimizer step; ``on_evaluate(loop)`` just before
the shipped student is evaluated; ``on_log(loop, record)`` when a metrics line is written (after its evaluation,
if any); ``on_fit_end(loop)``. A callback that returns a module from ``shipped_student()`` decides which student
is evaluated and saved (the EMA does), and one with ``checkpoint_state()`` has that object saved and restored with
the training state. A callback whose ``should_stop(loop)`` returns True after a step ends the loop there (logged,
evaluated, checkpointed). ``summary()`` entries go into results.json. ``loop`` is what :class:`Loop` declares.

How much the student trains: ``student_updates(step, updates)`` may change the number of student updates a step
makes (the loop asks every callback in order, starting from ``train.student_steps``); a callback that holds the
student back for the first steps of the plan says how many in ``generator_only_steps(steps)`` (the student's LR
schedule spans the rest, and the budget's timing weighs them as generator-only steps). ``fixed_plan = True``: the
callback's steps are a fraction of the first plan, so the run keeps its step count (no budget re-plan).

A recipe's ``[[callbacks]]`` (``name``, ``params``) are registered classes: ``__init__(**params)`` checks the
params, ``check(context)`` the run (:class:`CallbackContext`), ``attach(context)`` sizes the callback for it. A
callback that shapes what the conditional generator is asked for also has ``wrap_labels(labels, context)``: it
takes the label function built so far and returns its own. Callbacks run in the order of their ``order``
(a class attribute; the list's order within one value), which also names their checkpoint entries.
A new callback is one file with ``@register_callback("name")`` plus its import line in datafree/callbacks/__init__.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from torch import nn

from datafree.config import ConfigError
from datafree.registry import Registry

LabelFn = Callable[[int, torch.device, torch.Generator], torch.Tensor]  # (n, device, rng) -> what each image is for


class Loop(Protocol):
    """What a callback may read and call on the loop (datafree.trainer.DataFreeTrainer implements it)."""

    accelerator: Any  # accelerate.Accelerator: device, num_processes, reduce / gather, print, autocast
    config: Any  # the run's TrainConfig (steps may move: a budget re-plans)
    progress: Any  # .step, .elapsed_s, .best_acc
    student: nn.Module  # the prepared student with its losses
    opt_s: torch.optim.Optimizer  # the student's optimizer (its LR schedule steps once per step, after the updates)
    generator: nn.Module  # the prepared generator
    synthesize: Any  # datafree.batches.Synthesizer: images(step, draw, ...), layout(...), the latent RNG
    out: Any  # the run folder (pathlib.Path)
    fixed_plan: bool  # a callback keeps the planned step count (a warm-up): no re-plan

    @property
    def student_net(self) -> nn.Module: ...

    @property
    def shipped_student(self) -> nn.Module: ...

    def evaluate(self, model: nn.Module) -> float: ...

    def frozen_student_logits(self, images: torch.Tensor) -> torch.Tensor: ...

    def set_total_steps(self, steps: int) -> None: ...


@dataclass
class CallbackContext:
    """What a recipe's callbacks may read of the run when they are checked and attached."""

    num_classes: int
    steps: int  # train.steps as planned before step 0
    conditional: bool  # generator.conditional: the generator is told what each image is for
    rank: int = 0
    world: int = 1
    order: Any = None  # a RotatingLabels when the classes do not fit in a batch (K > batch), else None
    transfer: str = "synthetic"  # train.transfer: "real" has no generator step
    budget: Any = None  # a budgeted run's plan (datafree.callbacks.budget.BudgetPlan, made by the pipeline), else None


_CALLBACKS = Registry("callback", "callbacks")
register_callback = _CALLBACKS.register


def list_callbacks() -> list[str]:
    return _CALLBACKS.names()


class Callback:
    order = 50  # where it runs among the loop's callbacks (class coverage 0 ... label rotation 90, warm-up 95, budget 99)
    fixed_plan = False  # True: the run keeps the step count it was planned with (no budget re-plan)

    def check(self, context: CallbackContext) -> None:
        """A recipe callback: raise ConfigError for a run it cannot serve (before anything is built)."""

    def attach(self, context: CallbackContext) -> None:
        """A recipe callback: size it for the run (classes, steps, processes)."""

    def setup(self, loop: Loop) -> None:
        pass

    def on_step_start(self, loop, step: int, progress: float) -> None:
        pass

    def on_synthesized(self, loop, step: int, batch) -> None:
        """After the generator's batch of a step went through the teacher (a SynthBatch; no host sync, please)."""

    def on_student_update(self, loop, step: int, progress: float) -> None:
        pass

    def student_updates(self, step: int, updates: int) -> int:
        """The student updates step ``step`` makes, given ``updates`` from the callbacks before (default: as is)."""
        return updates

    def generator_only_steps(self, steps: int) -> int:
        """How many of the first steps of a ``steps``-long plan make no student update (default none)."""
        return 0

    def summary(self) -> dict:
        """Entries for results.json at the end of a run."""
        return {}

    def on_evaluate(self, loop) -> None:
        """Just before the shipped student is evaluated on the test set (e.g. to recompute its statistics)."""

    def on_log(self, loop, record: dict) -> None:
        pass

    def on_fit_end(self, loop) -> None:
        pass

    def shipped_student(self) -> nn.Module | None:
        return None

    def checkpoint_state(self):
        """An object with state_dict/load_state_dict to save with the training state (None: nothing)."""
        return None

    stop_reason = "a callback's goal was reached"  # printed when should_stop ends the loop

    def should_stop(self, loop) -> bool:
        """Asked once after every step: True ends the loop early (e.g. a search that reached its target)."""
        return False


LIST_CLASSES_UP_TO = 100  # a metrics line lists per-class values up to this many classes, and summarizes beyond


def per_class_field(values: list, lowest: int = 5) -> list | dict:
    """A per-class list for a metrics line: as is up to :data:`LIST_CLASSES_UP_TO` classes; beyond (a 1000-class
    teacher would write thousands of numbers per line), its min / mean / max and the ``lowest`` classes as
    ``[class, value]`` pairs. results.json keeps the full lists."""
    if len(values) <= LIST_CLASSES_UP_TO:
        return values
    known = [(k, v) for k, v in enumerate(values) if v is not None]
    if not known:
        return {"classes": len(values)}
    order = sorted(known, key=lambda kv: kv[1])
    return {"classes": len(values), "min": order[0][1], "mean": round(sum(v for _, v in known) / len(known), 4),
            "max": order[-1][1], "lowest": [[k, v] for k, v in order[:lowest]]}  # fmt: skip


def name_classes(classes: list[int], most: int = 10) -> str:
    """Up to ``most`` class indices, then how many more: a 1000-class warning stays one line."""
    shown = ", ".join(map(str, classes[:most]))
    return f"[{shown}{f', ... and {len(classes) - most} more' if len(classes) > most else ''}]"


EVERY_RUN = ("coverage", "budget")  # registered callbacks every run has: added where a recipe does not list them (its params)


def build_callbacks(pieces: list[tuple[str, dict]], context: CallbackContext, check_only: bool = False) -> list[Callback]:
    """The recipe's callbacks (name, params), with those every run has (``EVERY_RUN``) added where not listed:
    built, checked against the run, attached (unless ``check_only``)."""
    listed = {name for name, _ in pieces}
    pieces = [*pieces, *((name, {}) for name in EVERY_RUN if name not in listed)]
    built = _CALLBACKS.create_list(pieces, "[[callbacks]]")
    for callback in built:
        callback.check(context)
    if not check_only:
        for callback in built:
            callback.attach(context)
    return built


def steps_without_student(callbacks: list[Callback], steps: int) -> int:
    """The first steps of a ``steps``-long plan that make no student update (a warm-up's): what the student's LR
    schedule leaves out and the budget's timing weighs as generator-only."""
    return sum(callback.generator_only_steps(steps) for callback in callbacks)


def chain_labels(callbacks: list[Callback], labels: LabelFn | None, context: CallbackContext) -> LabelFn | None:
    """The conditional generator's label function after every callback that shapes it, in callback order."""
    for callback in callbacks:
        wrap = getattr(callback, "wrap_labels", None)
        if wrap is not None:
            labels = wrap(labels, context)
    return labels
