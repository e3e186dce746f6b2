"""Presets: what a recipe or the Python call starts from, and what each reads beyond the teacher's weights."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from datafree import distill_datafree
from datafree.config import ConfigError, dafl_terms, from_dict, load_toml
from datafree.nets.feature_stats import record_feature_stats, record_teacher_stats
from tests.conftest import BNTeacher

TINY = {"steps": 2, "batch_size": 8, "eval_every": 2, "log_every": 1, "mixed_precision": "no"}


class PlainTeacher(nn.Module):
    """No BatchNorm: nothing in the weights describes the training data."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x):
        return self.head(self.body(x))


def student() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))


def run(tmp_path, teacher, **kwargs) -> tuple[dict, list[dict], str]:
    out = tmp_path / "run"
    train = {**TINY, "output_dir": str(out), **kwargs.pop("train", {})}
    results = distill_datafree(teacher, student(), image_size=16, channels=1, num_classes=4, mean=(0.3,), std=(0.35,),
                               train=train, **kwargs)  # fmt: skip
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return results, lines, (out / "report.md").read_text()


@pytest.mark.slow
def test_fewest_arguments_on_a_batchnorm_cnn_use_its_batchnorm_statistics_and_no_per_class_term(tmp_path, capsys):
    torch.manual_seed(0)
    results, lines, report = run(tmp_path, BNTeacher())
    assert "g_feature_stats" in lines[0] and "g_class_stats" not in lines[0] and "g_penultimate_stats" not in lines[0]
    assert "g_image_stats" not in lines[0]
    assert "g_onehot" in lines[0] and "g_activation" not in lines[0]  # the default preset, not DAFL's three
    assert results["preset"] == "default"
    assert results["uses"] == ["the teacher's BatchNorm running statistics"]
    assert [note.split(" off")[0] for note in results["terms_off"]] == ["class_feature_stats", "class_penultimate_stats",
                                                                       "class_image_stats"]  # fmt: skip
    assert "Knowledge used beyond the teacher's weights: the teacher's BatchNorm running statistics." in report
    assert "the run reads: the teacher's BatchNorm running statistics" in capsys.readouterr().out


@pytest.mark.slow
def test_recorded_per_class_statistics_are_used_when_passed(tmp_path):
    torch.manual_seed(0)
    teacher = BNTeacher().eval()
    batches = [(torch.randn(16, 1, 16, 16), torch.arange(16) % 4) for _ in range(2)]
    _, per_class = record_teacher_stats(teacher, batches, num_classes=4, taps=["features.0.0", "features.2.0"])
    teacher.train()
    results, lines, _ = run(tmp_path, teacher, class_feature_stats=per_class)
    assert all(key in lines[0] for key in ("g_class_stats", "g_penultimate_stats", "g_image_stats"))
    assert results["terms_off"] == []
    assert results["uses"] == ["the teacher's BatchNorm running statistics",
                               "per-class feature statistics passed as class_feature_stats=",
                               "per-class penultimate features passed as class_feature_stats=",
                               "per-class spread between images passed as class_feature_stats="]  # fmt: skip


@pytest.mark.slow
def test_per_class_statistics_of_the_layers_only_leave_the_penultimate_term_out_and_say_how_to_record_it(tmp_path):
    torch.manual_seed(0)
    teacher = BNTeacher().eval()
    batches = [(torch.randn(16, 1, 16, 16), torch.arange(16) % 4) for _ in range(2)]
    per_class = record_feature_stats(teacher, batches, taps=["features.0.0", "features.2.0"], num_classes=4)
    teacher.train()
    results, lines, _ = run(tmp_path, teacher, class_feature_stats=per_class)
    assert "g_class_stats" in lines[0] and "g_penultimate_stats" not in lines[0] and "g_image_stats" not in lines[0]
    penultimate, between_images = results["terms_off"]  # what record_feature_stats does not record
    assert penultimate.startswith("class_penultimate_stats off") and "record_teacher_stats records them all" in penultimate
    assert between_images.startswith("class_image_stats off") and "record_teacher_stats" in between_images


@pytest.mark.slow
def test_a_teacher_without_batchnorm_or_statistics_runs_on_its_weights_alone_and_says_so(tmp_path, capsys):
    torch.manual_seed(0)
    results, lines, report = run(tmp_path, PlainTeacher())
    assert not any(key.endswith("stats") for key in lines[0])
    assert results["uses"] == [] and len(results["terms_off"]) == 4
    assert "has no BatchNorm layers" in results["terms_off"][0]
    assert "nothing beyond the teacher's weights" in report
    assert "the run reads: nothing beyond the teacher's weights" in capsys.readouterr().out


@pytest.mark.slow
def test_strict_preset_ignores_batchnorm_statistics(tmp_path):
    torch.manual_seed(0)
    results, lines, _ = run(tmp_path, BNTeacher(), preset="strict")
    assert results["uses"] == [] and results["terms_off"] == []
    assert "g_feature_stats" not in lines[0] and "g_moment" in lines[0]


@pytest.mark.slow
def test_dafl_preset_is_the_pure_dafl_objective_and_generator(tmp_path):
    torch.manual_seed(0)
    results, lines, _ = run(tmp_path, PlainTeacher(), preset="dafl")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    g = config["generator"]
    assert (g["output"], g["width"], g["lr"], g["conditional"]) == ("bn", 128, 0.2, False)
    assert config["train"]["student_steps"] == 1 and config["preset"] == "dafl"
    assert [(t["name"], t["weight"]) for t in config["synthesis"]] == [(t.name, t.weight) for t in dafl_terms()]
    for line in lines:  # L_G = L_oh + 0.1 L_a + 5 L_ie, and nothing else
        expected = line["g_onehot"] + 0.1 * line["g_activation"] + 5 * line["g_entropy"]
        assert line["g_total"] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert results["uses"] == []


def test_recipes_lay_their_values_over_the_preset():
    assert from_dict({}).preset == "default" and from_dict({}).generator.conditional
    own = from_dict({"generator": {"width": 64}, "synthesis": [{"name": "onehot"}]})
    assert own.generator.width == 64 and own.generator.output == "pixels"  # one key changed, the rest the preset's
    assert [t.name for t in own.synthesis] == ["onehot"]  # a list replaces the preset's whole
    mnist = load_toml("runs/mnist.toml")  # the paper's settings stay the paper's
    assert mnist.preset == "dafl" and mnist.generator.output == "bn" and not mnist.generator.conditional
    assert [t.name for t in load_toml("runs/zoo.toml").synthesis] == [t.name for t in from_dict({}).synthesis]
    # the student's loss: KD at T = 4 in the default (and the zoo, which inherits it), DAFL's T = 1 in "dafl"
    assert [(t.name, t.params) for t in load_toml("runs/zoo.toml").distill] == [("kd", {"temperature": 4.0})]
    assert [(t.name, t.params) for t in from_dict({"preset": "dafl"}).distill] == [("kd", {})]
    assert [(t.name, t.params) for t in from_dict({"distill": [{"name": "at"}]}).distill] == [("at", {})]
    # the student's BatchNorm statistics from 20 un-augmented generator batches: the default and the zoo, not DAFL
    precise = lambda config: [c.params for c in config.callbacks if c.name == "precise_bn"]  # noqa: E731
    assert precise(load_toml("runs/zoo.toml")) == precise(from_dict({})) == [{"batches": 20}]
    assert precise(from_dict({"preset": "dafl"})) == []
    with pytest.raises(ConfigError, match="'dafll' is not one of"):
        from_dict({"preset": "dafll"})


def test_the_default_one_hot_term_hands_the_second_half_to_the_statistics_terms_and_strict_keeps_it_whole():
    """The weight the loop applies (scheduled_weight, as datafree/synthesis/base.py does) at each progress."""
    from datafree.distill.objective import scheduled_weight

    def weights(config, name="onehot"):
        term = next(t for t in config.synthesis if t.name == name)
        return [scheduled_weight(term.weight, term.schedule, p, term.end_weight, term.milestones, term.gamma)
                for p in (0.0, 0.49, 0.5, 0.99)]  # fmt: skip

    default, strict = from_dict({}), from_dict({"preset": "strict"})
    assert weights(default) == pytest.approx([1.0, 1.0, 0.3, 0.3])
    assert weights(strict) == [1.0, 1.0, 1.0, 1.0]  # nothing else holds its images to their classes
    assert not any("stats" in t.name for t in strict.synthesis)
    assert weights(strict, "adversarial") == weights(default, "adversarial")  # the rest as default's


@pytest.mark.slow
def test_the_python_call_takes_batches_and_callbacks_and_their_old_keys(tmp_path):
    torch.manual_seed(0)
    results, lines, _ = run(tmp_path, BNTeacher(), preset="dafl", batches=[{"name": "fresh", "params": {"size": 4}}],
                            callbacks=[{"name": "ema", "params": {"decay": 0.5}}], train={"student_steps": 2})  # fmt: skip
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["batches"] == [{"name": "fresh", "params": {"size": 4}}]
    assert config["callbacks"] == [{"name": "ema", "params": {"decay": 0.5}}]
    torch.manual_seed(0)
    run(tmp_path / "old", BNTeacher(), preset="dafl", train={"student_steps": 2, "fresh_batches": True,
                                                                          "fresh_batch_size": 4, "ema_decay": 0.5})  # fmt: skip
    from tests.conftest import assert_same_weights

    assert_same_weights(tmp_path / "run", tmp_path / "old" / "run")  # the same run, spelled the old way
    torch.manual_seed(0)
    run(tmp_path / "plain", BNTeacher(), preset="dafl", batches=[{"name": "fresh", "params": {"size": 4}}],
        train={"student_steps": 2})  # without the EMA: the shipped weights are not the average's
    with pytest.raises(AssertionError):
        assert_same_weights(tmp_path / "run", tmp_path / "plain" / "run", names=("student_last.safetensors",))
