"""``ema``: the student shipped as an exponential moving average of its weights."""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from datafree.callbacks.base import Callback, register_callback
from datafree.config import ConfigError


@register_callback("ema")
class EMA(Callback):
    """Ship an exponential moving average of the student: e_k = d e_(k-1) + (1 - d) w_k after every update.

    The average is evaluated (``student_acc``; the raw student as ``student_acc_raw``), saved, and copied into
    the student at the end, so the final accuracy, the saved weights and the Python call's module are its.
    """

    order = 20  # after precise BatchNorm: at the end it recomputes the average's statistics, which the EMA copies

    def __init__(self, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"[[callbacks]] \"ema\": decay in (0, 1) (e.g. 0.999), got {decay!r}")
        self.decay = float(decay)
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
