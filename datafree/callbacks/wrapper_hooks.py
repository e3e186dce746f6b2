"""The student wrappers' hooks as a callback (built by datafree/build.py when the student is wrapped)."""

from __future__ import annotations

from pathlib import Path

import torch

from datafree.callbacks.base import Callback


class WrapperHooks(Callback):
    """The student wrappers' after-step hooks, early stop, metrics, resumable state and export step."""

    order = 30

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


def wrapper_callbacks(wrappers: list) -> list[Callback]:
    """The callback a wrapped student needs (its wrappers' hooks); none for a bare student."""
    return [WrapperHooks(wrappers)] if wrappers else []
