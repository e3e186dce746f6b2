"""The student-wrapper seam: weight clipping is one file (datafree/wrappers/clip.py) plus a registry line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import save_random_teacher, tiny_config


def test_clip_wrapper_adds_its_parameter_group_and_clamps_after_every_student_step(tmp_path):
    from datafree import build

    wrap = [{"name": "clip", "params": {"max_abs": 0.0625, "lr_scale": 0.5, "weight_decay": 0.0}}]
    config = tiny_config(tmp_path, student={"wrap": wrap, "lr": 0.01}, train={"student_steps": 2, "steps": 1})
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    groups = {g["name"]: g for g in trainer.opt_s.param_groups}
    assert set(groups) == {"student", "clip"}
    assert groups["clip"]["lr"] == pytest.approx(0.005) and groups["student"]["lr"] == pytest.approx(0.01)
    net = trainer.student_net
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert {id(p) for p in groups["clip"]["params"]} == {id(w) for w in weights}
    assert all(id(p) not in {id(w) for w in weights} for p in groups["student"]["params"])  # biases stay default
    assert max(w.abs().max().item() for w in weights) > 0.0625  # the initialization exceeds the bound
    trainer.train_step(0)
    assert max(w.abs().max().item() for w in weights) <= 0.0625
    assert any((w.abs() == 0.0625).any() for w in weights)  # clamped, not merely small


def test_unknown_wrapper_is_a_clear_error(tmp_path):
    from datafree import build
    from datafree.config import ConfigError

    config = tiny_config(tmp_path, student={"wrap": [{"name": "clipz"}]})
    save_random_teacher(config)
    with pytest.raises((ValueError, ConfigError), match="registered wrappers: .*clip"):
        build.trainer_from_config(config)
