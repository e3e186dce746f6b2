"""A user's own teacher and student (no registry, no special forward) distilled through the Python API."""

import json

import pytest
import torch
from torch import nn

from datafree import distill_datafree
from datafree.config import ConfigError
from datafree.features import last_linear_input


class UserTeacher(nn.Module):
    """Plain user model: the classifier is a Linear inside a Sequential; forward takes only x."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))

    def forward(self, x):
        return self.head(self.body(x))


def test_penultimate_feature_is_found_without_touching_the_model():
    assert last_linear_input(UserTeacher()) == "head.2:input"


def test_user_networks_distill_end_to_end(tmp_path):
    torch.manual_seed(0)
    teacher, student = UserTeacher(), nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    eval_set = torch.utils.data.TensorDataset(torch.randn(40, 3, 16, 16), torch.randint(0, 5, (40,)))
    before = [p.clone() for p in student.parameters()]
    results = distill_datafree(teacher, student, image_size=16, channels=3, num_classes=5, eval_set=eval_set,
                               generator={"width": 8, "latent_dim": 8},
                               train={"steps": 3, "batch_size": 8, "eval_every": 3, "log_every": 1,
                                      "output_dir": str(tmp_path / "run"), "mixed_precision": "no"})  # fmt: skip
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert results["steps"] == 3 and results["student_acc_final"] == lines[-1]["student_acc"]  # evaluated, not made up
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in teacher.modules())
    assert hooks == 0 and all(p.requires_grad for p in teacher.parameters())  # the user's teacher as it came
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert line["g_activation"] < 0  # the hook on head.2's input delivered a non-zero feature


def test_wrong_class_count_and_unknown_keys_fail_early(tmp_path):
    with pytest.raises(ConfigError, match="num_classes=7"):
        distill_datafree(UserTeacher(), UserTeacher(), image_size=16, channels=3, num_classes=7,
                         train={"output_dir": str(tmp_path)})  # fmt: skip
    with pytest.raises(ConfigError, match="stepz"):
        distill_datafree(UserTeacher(), UserTeacher(), image_size=16, channels=3, num_classes=5, train={"stepz": 1})


def test_the_call_without_an_output_dir_gets_a_fresh_folder_and_sections_pass_by_keyword(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher, student = UserTeacher(), nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    results = distill_datafree(teacher, student, image_size=16, channels=3, num_classes=5,
                               generator={"width": 8, "latent_dim": 8}, student={"lr": 1e-3},
                               teacher={"feature_layer": "head.2:input"},
                               train={"steps": 1, "batch_size": 4, "mixed_precision": "no"})  # fmt: skip
    folders = list((tmp_path / "outputs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("custom-") and (folders[0] / "results.json").exists()
    assert json.loads((folders[0] / "config.json").read_text())["student"]["lr"] == 1e-3
    assert results["steps"] == 1
