"""Loop callbacks: code that acts at fixed points of the loop without the loop knowing what it is.

Hooks (all optional): ``setup(loop)`` once after ``accelerator.prepare``; ``on_step_start(loop, step,
progress)``; ``on_student_update(loop, step, progress)`` after each student optimizer step;
``on_evaluate(loop)`` just before the shipped student is evaluated; ``on_log(loop, record)`` when a metrics line
is written (after its evaluation, if any); ``on_fit_end(loop)``. A callback that
returns a module from ``shipped_student()`` decides which student is evaluated and saved (the EMA does),
and one with ``checkpoint_state()`` has that object saved and restored with the training state. A callback
whose ``should_stop(loop)`` returns True after a step ends the loop there (logged, evaluated, checkpointed).
``loop`` is the :class:`datafree.trainer.DataFreeTrainer` (``loop.student_net``, ``loop.accelerator``...).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class Callback:
    def setup(self, loop) -> None:
        pass

    def on_step_start(self, loop, step: int, progress: float) -> None:
        pass

    def on_synthesized(self, loop, step: int, batch) -> None:
        """After the generator's batch of a step went through the teacher (a SynthBatch; no host sync, please)."""

    def on_student_update(self, loop, step: int, progress: float) -> None:
        pass

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


class Deadline(Callback):
    """End the loop before a wall-time budget (``train.max_minutes``) is overrun.

    The step count is fixed before step 0 from a short timing (so the schedules are exact); a machine that then
    runs slower than it timed (a shared CPU moves 5-15% within minutes) would push the run past its budget.
    This stops it at the step after which ``reserve_s`` (one more step, the last evaluations, the report) would
    no longer fit before ``deadline`` (a ``time.perf_counter()`` value). On several processes they agree (one
    all-reduce of a flag per step), so every rank stops at the same step.
    """

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


class EMA(Callback):
    """Ship an exponential moving average of the student: e_k = d e_(k-1) + (1 - d) w_k after every update.

    The average is evaluated (``student_acc``; the raw student as ``student_acc_raw``), saved, and copied into
    the student at the end, so the final accuracy, the saved weights and the Python call's module are its.
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.average: AveragedModel | None = None

    def setup(self, loop) -> None:
        self.average = AveragedModel(loop.student_net, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    def on_student_update(self, loop, step: int, progress: float) -> None:
        self.average.update_parameters(loop.student_net)

    def shipped_student(self) -> nn.Module | None:
        return self.average.module

    def on_log(self, loop, record: dict) -> None:
        if "student_acc" in record:
            record["student_acc_raw"] = loop.evaluate(loop.student)

    def on_fit_end(self, loop) -> None:
        loop.student_net.load_state_dict(self.average.module.state_dict())

    def checkpoint_state(self):
        return self.average


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


class ClassCoverage(Callback):
    """Which classes the generator actually makes: the teacher's argmax over the last ``window`` of steps.

    Counted on the device every step (no host sync); on each metrics line the shares go into the metrics
    line (``class_coverage``), and a class under ``min_share`` of the images (default 1/(3K)) is named there
    (``coverage_low``) and printed once, so a run never finishes silently with a student that saw no sandals.
    ``summary()`` gives results.json the shares over the last ``window_fraction`` of the run.
    """

    def __init__(self, num_classes: int, steps: int, window_fraction: float = 0.1, min_share: float | None = None):
        self.num_classes, self.window = num_classes, max(1, int(steps * window_fraction))
        self.min_share = min_share if min_share is not None else 1.0 / (3 * num_classes)
        self.counts = None  # (window, K) per-step histograms, a ring on the device
        self.counted = 0  # steps seen: no verdict before a full window (a young generator makes anything)
        self.warned: set[int] = set()

    def on_synthesized(self, loop, step: int, batch) -> None:
        labels = batch.teacher.logits.detach().argmax(dim=1)
        if self.counts is None:
            self.counts = torch.zeros(self.window, self.num_classes, dtype=torch.long, device=labels.device)
        self.counts[step % self.window] = torch.bincount(labels, minlength=self.num_classes)
        self.counted += 1

    def shares(self) -> list[float]:
        total = self.counts.sum(dim=0).float()
        return (total / total.sum().clamp_min(1)).tolist()

    def on_log(self, loop, record: dict) -> None:
        if self.counts is None:
            return
        shares = self.shares()
        low = sorted((k for k, share in enumerate(shares) if share < self.min_share), key=lambda k: shares[k])
        record["class_coverage"] = per_class_field([round(s, 4) for s in shares])
        if low and self.counted >= self.window:
            record["coverage_low"] = sorted(low) if len(low) <= 20 else {"count": len(low), "rarest": low[:10]}
            new = [k for k in low if k not in self.warned]  # the rarest first
            if new:
                loop.accelerator.print(f"warning: the generator makes almost no images of class(es) {name_classes(new)} "
                                       f"(< {self.min_share:.3f} of the last {self.window} steps' images); the "
                                       "student will not learn them (see report.md's class coverage)")  # fmt: skip
                self.warned.update(new)

    def checkpoint_state(self):
        return self  # the window resumes with the run, so a resumed run reports the same coverage

    def state_dict(self) -> dict:
        counts = self.counts if self.counts is not None else torch.zeros(self.window, self.num_classes, dtype=torch.long)
        return {"counts": counts, "counted": self.counted, "warned": sorted(self.warned)}

    def load_state_dict(self, state: dict) -> None:
        self.counts, self.counted, self.warned = state["counts"], int(state["counted"]), set(state["warned"])
        self.window = len(self.counts)  # the window of the plan it was saved under (a budget may re-plan)

    def summary(self) -> dict:
        if self.counts is None:
            return {}
        shares = self.shares()
        return {"class_coverage": [round(s, 4) for s in shares],
                "classes_under_coverage": [k for k, s in enumerate(shares) if s < self.min_share]}  # fmt: skip


class WrapperHooks(Callback):
    """The student wrappers' after-step hooks, early stop, metrics, resumable state and export step."""

    def __init__(self, wrappers: list):
        self.wrappers = wrappers

    def on_student_update(self, loop, step: int, progress: float) -> None:
        with torch.no_grad():
            for wrapper in self.wrappers:
                wrapper.after_step(loop.student_net, progress)

    def on_fit_end(self, loop) -> None:
        if loop.accelerator.is_main_process:
            for wrapper in self.wrappers:
                wrapper.export(loop.student_net, Path(loop.out))

    def should_stop(self, loop) -> bool:
        return any(wrapper.should_stop(loop.student_net) for wrapper in self.wrappers)

    def on_log(self, loop, record: dict) -> None:
        for wrapper in self.wrappers:
            record.update(wrapper.metrics(loop.student_net))

    def checkpoint_state(self):
        return self if any(wrapper.state_dict() for wrapper in self.wrappers) else None

    def state_dict(self) -> dict:
        return {str(i): wrapper.state_dict() for i, wrapper in enumerate(self.wrappers)}

    def load_state_dict(self, state: dict) -> None:
        for i, wrapper in enumerate(self.wrappers):
            wrapper.load_state_dict(state[str(i)])
