"""The ``lr_restart`` callback (SGDR's warm restarts; datafree/callbacks/lr_restart.py): the LR the student's updates
actually use, step by step, against the formula by hand; bad values refused."""

from __future__ import annotations

import pytest

from datafree import build
from datafree.config import ConfigError
from tests.conftest import save_random_teacher, tiny_config


def test_the_student_trains_at_the_restarted_rate_and_the_log_says_so(tmp_path):
    config = tiny_config(tmp_path, callbacks=[{"name": "lr_restart", "params": {"cycles": 2, "decay": 0.5}}],
                         student={"schedule": "cosine"}, train={"steps": 4, "student_steps": 2})  # fmt: skip
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    base, used = config.student.lr, []
    trainer.student.register_forward_pre_hook(lambda module, args: used.append(trainer.opt_s.param_groups[0]["lr"]))
    for step in range(4):
        trainer.train_step(step)
    # progress 0, 1/4, 1/2, 3/4: cycle 0 at t = 0, 1/2, then cycle 1 (peak x 0.5) at t = 0, 1/2; two updates per step
    expected = [base * m for m in (1.0, 0.5, 0.5, 0.25) for _ in range(2)]
    assert used == pytest.approx(expected)
    record = {"step": 2}
    next(c for c in trainer.callbacks if type(c).__name__ == "LRRestart").on_log(trainer, record)
    assert record["lr_s"] == pytest.approx(base * 0.5)  # what step 2 (the second) trained at, not the cosine's


@pytest.mark.parametrize("params", [{"cycles": 0}, {"decay": 0.0}, {"decay": 1.5}])
def test_bad_values_are_refused(tmp_path, params):
    with pytest.raises(ConfigError, match='"lr_restart": cycles >= 1 and decay in'):
        build.check_callbacks(tiny_config(tmp_path, callbacks=[{"name": "lr_restart", "params": params}]), 10)
