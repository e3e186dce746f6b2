"""Loop callbacks: code that acts at fixed points of the loop without the loop knowing what it is.

Hooks (all optional): ``setup(loop)`` once after ``accelerator.prepare``; ``on_step_start(loop, step,
progress)``; ``on_student_update(loop, step, progress)`` after each student optimizer step;
``on_evaluate(loop, record)`` when the metrics line is written; ``on_fit_end(loop)``. A callback that
returns a module from ``shipped_student()`` decides which student is evaluated and saved (the EMA does),
and one with ``checkpoint_state()`` has that object saved and restored with the training state.
``loop`` is the :class:`datafree.trainer.DataFreeTrainer` (``loop.student_net``, ``loop.accelerator``...).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class Callback:
    def setup(self, loop) -> None:
        pass

    def on_step_start(self, loop, step: int, progress: float) -> None:
        pass

    def on_student_update(self, loop, step: int, progress: float) -> None:
        pass

    def on_evaluate(self, loop, record: dict) -> None:
        pass

    def on_fit_end(self, loop) -> None:
        pass

    def shipped_student(self) -> nn.Module | None:
        return None

    def checkpoint_state(self):
        """An object with state_dict/load_state_dict to save with the training state (None: nothing)."""
        return None


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

    def on_evaluate(self, loop, record: dict) -> None:
        if "student_acc" in record:
            record["student_acc_raw"] = loop.evaluate(loop.student)

    def on_fit_end(self, loop) -> None:
        loop.student_net.load_state_dict(self.average.module.state_dict())

    def checkpoint_state(self):
        return self.average


class WrapperHooks(Callback):
    """The student wrappers' after-step hooks and export step, at the loop's points for them."""

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
