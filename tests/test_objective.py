"""The student objective: scheduled weights, per-term logging, owned parameters restored on resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from datafree.distill.objective import scheduled_weight
from datafree.pipeline import distill_from_config
from tests.conftest import save_random_teacher, tiny_config


def test_weight_schedules_by_hand():
    assert scheduled_weight(2.0, "constant", 0.7) == 2.0
    assert scheduled_weight(1.0, "linear", 0.25, end_weight=0.0) == pytest.approx(0.75)
    assert scheduled_weight(1.0, "linear", 1.5, end_weight=0.2) == pytest.approx(0.2)  # clamped at the end
    assert scheduled_weight(1.0, "step", 0.5, milestones=[0.4, 0.8], gamma=0.1) == pytest.approx(0.1)
    assert scheduled_weight(1.0, "step", 0.9, milestones=[0.4, 0.8], gamma=0.1) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="linear"):
        scheduled_weight(1.0, "cosine", 0.5)


@pytest.mark.slow
def test_feature_loss_terms_logged_and_owned_parameters_checkpointed_and_resumed(tmp_path):
    losses = [{"name": "kd", "weight": 1.0, "schedule": "linear", "end_weight": 0.0},
              {"name": "hint", "weight": 1.0, "params": {"student_layers": ["relu2"], "teacher_layers": ["relu2"]}}]
    config = tiny_config(tmp_path, distill=losses, train={"steps": 3, "checkpoint_every": 3})
    save_random_teacher(config)
    distill_from_config(config)
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert "s_kd" in lines[0] and "s_hint" in lines[0]
    saved = load_file(f"{config.train.output_dir}/student_last_with_losses.safetensors")
    regressor = {k: v for k, v in saved.items() if k.startswith("losses.1.")}
    assert regressor, "the hint regressor is saved with the student"

    # a resumed trainer restores the regressor exactly from the Accelerate state folder
    from datafree import build

    build.reset_accelerate()
    trainer = build.trainer_from_config(config)  # the same seeded initialization the run started from
    fresh = {k: v.clone() for k, v in trainer.student.state_dict().items() if k.startswith("losses.1.")}
    trainer.resume()
    trainer.fit()  # the run is complete: resuming loads the last state and trains no further step
    restored = {k: v for k, v in trainer.accelerator.unwrap_model(trainer.student).state_dict().items()
                if k.startswith("losses.1.")}  # fmt: skip
    assert any(not torch.equal(fresh[k], regressor[k]) for k in regressor)  # training moved it
    for key, value in regressor.items():
        torch.testing.assert_close(restored[key], value, rtol=0, atol=0)
