"""``lr_restart``: the student's learning rate restarted ``cycles`` times over the run, cosine within each cycle.

SGDR (Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017): within cycle c of
``cycles`` equal cycles, at the fraction t in [0, 1) of it, the student's learning rate is

    lr = base_lr * decay^c * (1 + cos(pi t)) / 2

replacing the recipe's student schedule for the updates of each step (set at the step's start; the metrics line's
``lr_s`` shows it). Deviations: equal cycles (SGDR lets each cycle grow by a factor T_mult) and no floor
(SGDR's eta_min = 0 here); ``decay`` lowers each restart's peak. Stateless: a resumed run computes the same LR.
"""

from __future__ import annotations

import math

from datafree.callbacks.base import Callback, Loop, register_callback
from datafree.config import ConfigError


@register_callback("lr_restart")
class LRRestart(Callback):
    def __init__(self, cycles: int = 2, decay: float = 1.0):
        if not isinstance(cycles, int) or cycles < 1 or not 0.0 < decay <= 1.0:
            raise ConfigError(f"[[callbacks]] \"lr_restart\": cycles >= 1 and decay in (0, 1], got {cycles!r}, {decay!r}")
        self.cycles, self.decay = cycles, float(decay)
        self.base: list[float] = []

    def multiplier(self, progress: float) -> float:
        cycle, within = divmod(min(max(progress, 0.0), 0.999999) * self.cycles, 1.0)
        return self.decay**cycle * 0.5 * (1.0 + math.cos(math.pi * within))

    def setup(self, loop: Loop) -> None:
        self.base = [group["initial_lr"] if "initial_lr" in group else group["lr"] for group in loop.opt_s.param_groups]

    def on_step_start(self, loop: Loop, step: int, progress: float) -> None:
        for group, base in zip(loop.opt_s.param_groups, self.base):
            group["lr"] = base * self.multiplier(progress)

    def on_log(self, loop: Loop, record: dict) -> None:
        record["lr_s"] = self.base[0] * self.multiplier((record["step"] - 1) / loop.config.steps)
