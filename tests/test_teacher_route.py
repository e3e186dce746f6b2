"""RCO's route teacher: anchor schedules, the student's targets from the anchor, resume mid-route, clear errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from datafree import build
from datafree.io.checkpoint import CheckpointError, save_weights
from datafree.config import ConfigError
from datafree.pipeline import distill_from_config
from datafree.teachers.route import Route
from tests.conftest import assert_same_weights, crash_then_resume, save_random_teacher, tiny_config


def test_equal_schedule_switches_at_equal_intervals():
    route = Route(3)
    assert [route.at_progress(step / 9) for step in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_plateau_schedule_moves_on_after_patience_flat_logs_and_never_later_than_the_equal_one():
    route = Route(3, "plateau", patience=2, min_delta=0.01)
    route.at_progress(0.0)
    for loss in (1.0, 0.5, 0.499):  # 0.5 is a 50% improvement; 0.499 less than 1%: one flat log
        route.observe(loss)
    assert route.at_progress(0.1) == 0 and route.waited == 1
    route.observe(0.498)  # a second flat log: patience reached
    assert route.at_progress(0.1) == 1 and (route.best, route.waited) == (math.inf, 0)  # counters restart
    route.observe(0.3)
    assert route.at_progress(0.2) == 1  # still improving, before the equal schedule's switch point (1/3 * 2)
    assert route.at_progress(0.7) == 2  # the equal schedule's deadline
    state = route.state_dict()
    again = Route(3, "plateau", patience=2)
    again.load_state_dict(json.loads(json.dumps(state)))  # JSON round trip: what the checkpoint holds
    assert again.state_dict() == state


def route_config(tmp_path, **params):
    """A tiny recipe whose teacher has a route of two random checkpoints plus the converged one."""
    config = tiny_config(tmp_path, teacher={"kind": "route", "params": params},
                         train={"checkpoint_every": 3})  # fmt: skip
    save_random_teacher(config, seed=0)
    spec = build.image_spec(config)
    route = tmp_path / "route"
    for epoch, seed in ((1, 11), (2, 12)):
        torch.manual_seed(seed)
        save_weights(build.build_net("lenet5", spec), route / f"epoch_{epoch:03d}.safetensors", {"arch": "lenet5"})
    return config


def test_the_student_learns_from_the_anchor_while_the_generator_inverts_the_converged_teacher(tmp_path):
    config = route_config(tmp_path)
    source, _, spec = build.networks_from_config(config)
    final = load_file(str(config.teacher_checkpoint))
    first = load_file(str(tmp_path / "route" / "epoch_001.safetensors"))
    student_side = source.for_student()
    assert student_side is not source
    x = torch.randn(4, 1, 32, 32)
    for progress, expected, name in ((0.0, first, "epoch_001.safetensors"), (0.9, final, "teacher.safetensors")):
        source.set_progress(progress)
        weights = student_side.members()[0].net.state_dict()
        assert all(torch.equal(weights[k], expected[k]) for k in expected)
        assert all(torch.equal(source.members()[0].net.state_dict()[k], final[k]) for k in final)  # G's: always final
        reference = build.build_net("lenet5", spec)
        reference.load_state_dict(expected)
        torch.testing.assert_close(student_side(x).logits, reference.eval()(x), rtol=0, atol=0)
        assert source.schedule_state()["anchor"] == name
    source.set_progress(0.0)  # a route only moves forward
    assert source.schedule_state()["anchor"] == "teacher.safetensors"
    inverting_anchor, _, _ = build.networks_from_config(route_config(tmp_path / "b", invert="anchor"))
    assert inverting_anchor.for_student() is inverting_anchor


@pytest.mark.slow
def test_a_run_resumed_mid_route_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch):
    straight = route_config(tmp_path / "a")
    distill_from_config(straight)
    state = json.loads(next((tmp_path / "a" / "run" / "checkpoints").glob("step_0000003/train_state_0.json")).read_text())
    assert "epoch_002" in json.dumps(state)  # 3 anchors over 6 steps: steps 2-3 use the second (p = 2/6 -> 1)

    resumed = route_config(tmp_path / "b")
    crash_then_resume(resumed, monkeypatch)  # checkpoint at step 3, crash during step 5 (on the third anchor)
    assert_same_weights(straight.train.output_dir, resumed.train.output_dir)


def test_route_errors_name_the_problem_before_step_0(tmp_path):
    config = tiny_config(tmp_path, teacher={"kind": "route"})
    save_random_teacher(config)
    with pytest.raises(ConfigError, match="route directory .* does not exist; train the teacher with train_teacher.py"):
        build.networks_from_config(config)
    (tmp_path / "route").mkdir()
    with pytest.raises(ConfigError, match="holds no epoch_"):
        build.networks_from_config(config)
    spec = build.image_spec(config)
    save_weights(build.build_net("lenet5_half", spec), tmp_path / "route" / "epoch_001.safetensors")
    with pytest.raises(CheckpointError, match="route anchor epoch_001.safetensors .* does not match the LeNet5"):
        build.networks_from_config(config)
    with pytest.raises(ConfigError, match="schedule must be one of"):
        build.networks_from_config(tiny_config(tmp_path, teacher={"kind": "route", "params": {"schedule": "greedy"}}))
    with pytest.raises(ConfigError, match=r"epochs \[7\] are not in"):
        build.networks_from_config(tiny_config(tmp_path, teacher={"kind": "route", "params": {"epochs": [7]}}))
