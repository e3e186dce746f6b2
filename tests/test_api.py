"""A user's own teacher and student (no registry, no special forward) distilled through the Python API."""

import json

import pytest
import torch
from torch import nn

from datafree import distill_datafree
from datafree.config import ConfigError
from datafree.nets.features import last_linear_input
from tests.conftest import BNTeacher


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
    results = distill_datafree(teacher, student, image_size=16, channels=3, num_classes=5, mean=(0.5,), std=(0.5,), eval_set=eval_set,
                               preset="dafl", generator={"width": 8, "latent_dim": 8},
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
        distill_datafree(UserTeacher(), UserTeacher(), image_size=16, channels=3, num_classes=7, mean=(0.5,), std=(0.5,),
                         train={"output_dir": str(tmp_path)})  # fmt: skip
    with pytest.raises(ConfigError, match="stepz"):
        distill_datafree(UserTeacher(), UserTeacher(), image_size=16, channels=3, num_classes=5, mean=(0.5,), std=(0.5,), train={"stepz": 1})


def test_the_call_without_an_output_dir_gets_a_fresh_folder_and_sections_pass_by_keyword(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher, student = UserTeacher(), nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    results = distill_datafree(teacher, student, image_size=16, channels=3, num_classes=5, mean=(0.5,), std=(0.5,),
                               generator={"width": 8, "latent_dim": 8}, student={"lr": 1e-3},
                               teacher={"feature_layer": "head.2:input"},
                               train={"steps": 1, "batch_size": 4, "mixed_precision": "no"})  # fmt: skip
    folders = list((tmp_path / "outputs").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("custom-") and (folders[0] / "results.json").exists()
    assert json.loads((folders[0] / "config.json").read_text())["student"]["lr"] == 1e-3
    assert results["steps"] == 1


@pytest.mark.slow
def test_readme_call_on_a_batchnorm_teacher_leaves_the_users_modules_as_they_came(tmp_path):
    torch.manual_seed(0)
    teacher, student = BNTeacher(), nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    teacher.features[0][0].weight.requires_grad_(False)  # a user's own mix of frozen and trainable layers
    flags = [p.requires_grad for p in teacher.parameters()]
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    results = distill_datafree(teacher, student, image_size=16, channels=1, num_classes=4, mean=(0.3,), std=(0.35,),
                               class_names=["a", "b", "c", "d"], synthesis={"feature_stats": 1.0},
                               losses=[{"name": "kd"}, {"name": "hint", "params": {"student_layers": ["0"],
                                                                                  "teacher_layers": ["features.0"]}}],
                               teacher={"feature_layer": "classifier.3:input"}, student={"lr": 1e-3},
                               generator={"width": 8, "latent_dim": 8},
                               train={"steps": 2, "batch_size": 8, "eval_every": 2, "output_dir": str(tmp_path / "r")})  # fmt: skip
    hooks = lambda net: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())  # noqa: E731
    assert hooks(teacher) == 0 and hooks(student) == 0  # the feature-loss taps on the student are gone too
    assert [p.requires_grad for p in teacher.parameters()] == flags and teacher.training
    assert all(p.is_contiguous() for p in [*teacher.parameters(), *student.parameters()])  # NCHW, as they came
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in state.items())  # BN statistics included
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["student"]["arch"] == "user module (Sequential)" and config["teacher"]["arch"] == "user module (BNTeacher)"
    lines = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert "g_feature_stats" in lines[0] and "g_class_stats" not in lines[0]  # BN statistics, no per-class term
    assert results["class_names"] == ["a", "b", "c", "d"]  # recorded for the report, not fashion-mnist's


def test_the_call_needs_the_normalization_and_a_size_the_generator_can_make():
    with pytest.raises(ConfigError, match="mean= and std="):
        distill_datafree(BNTeacher(), BNTeacher(), image_size=16, channels=1, num_classes=4)
    with pytest.raises(ConfigError, match="multiple of 4"):
        distill_datafree(BNTeacher(), BNTeacher(), image_size=18, channels=1, num_classes=4, mean=(0.5,), std=(0.5,))


def test_missing_statistics_for_a_users_teacher_name_the_python_fix_not_a_recipe_command(tmp_path):
    with pytest.raises(ConfigError, match=r"nothing was passed as class_feature_stats= to distill_datafree: .*record_teacher_stats.*as class_feature_stats=, or drop the term\.$") as err:
        distill_datafree(BNTeacher(), BNTeacher(), image_size=16, channels=1, num_classes=4, mean=(0.5,), std=(0.5,),
                         preset="dafl", synthesis={"class_feature_stats": 1.0}, train={"output_dir": str(tmp_path / "r")})
    assert "--config" not in str(err.value)
