"""The preset's automatic choices (datafree/adapt/): derived from the networks, said in the run, recorded."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from datafree.adapt import adapt
from datafree.config import ConfigError, from_dict
from tests.conftest import BNTeacher


def mlp(classes: int = 4) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, classes))


def conv(classes: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))


def weights(config) -> dict[str, float]:
    return {term.name: term.weight for term in config.synthesis}


def test_an_mlp_student_gets_the_per_class_priors_at_4x_and_a_conv_student_nothing():
    assert from_dict({}).train.adapt == ["short_run"]  # the default lists only the run-length rule: a recipe opts in
    config = from_dict({"train": {"adapt": ["no_conv_student"]}})
    before = weights(config)
    adapted, lines = adapt(config, BNTeacher(), mlp())
    after = weights(adapted)
    assert (after["class_feature_stats"], after["class_penultimate_stats"]) == (40.0, 20.0)
    assert {k: v for k, v in after.items() if not k.startswith("class_")} == {
        k: v for k, v in before.items() if not k.startswith("class_")}  # nothing else moves
    (line,) = lines
    assert "class_feature_stats and class_penultimate_stats at 4x" in line and "no convolution" in line
    assert line.endswith("(no_conv_student)")
    assert adapted.train.adapt == [] and weights(config) == before  # consumed; the recipe given is left as it was
    assert adapt(adapted, BNTeacher(), mlp())[1] == []  # the config a run writes does not adapt twice
    same, lines = adapt(config, BNTeacher(), conv())
    assert lines == [] and weights(same) == before


def test_a_rule_with_nothing_to_change_says_nothing_and_the_rules_can_be_turned_off():
    strict = from_dict({"preset": "strict", "train": {"adapt": ["no_conv_student"]}})  # no per-class priors to weigh
    assert adapt(strict, BNTeacher(), mlp())[1] == []
    off = from_dict({"train": {"adapt": []}})
    assert adapt(off, BNTeacher(), mlp())[1] == [] and weights(adapt(off, BNTeacher(), mlp())[0]) == weights(off)
    assert from_dict({"preset": "dafl"}).train.adapt == []  # DAFL's objective as published


def test_a_student_without_normalization_gets_the_penultimate_loss_and_one_with_it_nothing():
    config = from_dict({"train": {"adapt": ["no_norm_student"]}})
    adapted, lines = adapt(config, BNTeacher(), conv())  # convolutions, no normalization: the rule applies
    added = [(t.name, t.weight) for t in adapted.distill][len(config.distill):]
    assert added == [("penultimate", 1.0)] and adapted.distill[: len(config.distill)] == config.distill
    assert weights(adapted) == weights(config)  # the generator's objective is untouched
    (line,) = lines
    assert "penultimate" in line and "no normalization layer" in line and line.endswith("(no_norm_student)")
    assert [t.name for t in config.distill] == ["kd"]  # the recipe given is left as it was
    normalized = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(4, 4))  # fmt: skip
    for student in (normalized, BNTeacher()):
        same, lines = adapt(config, BNTeacher(), student)
        assert lines == [] and [t.name for t in same.distill] == ["kd"]
    listed = from_dict({"train": {"adapt": ["no_norm_student"]},
                        "distill": [{"name": "kd"}, {"name": "penultimate", "weight": 0.5}]})  # fmt: skip
    kept, lines = adapt(listed, BNTeacher(), mlp())
    assert lines == [] and [(t.name, t.weight) for t in kept.distill] == [("kd", 1.0), ("penultimate", 0.5)]


def test_a_short_budgeted_run_doubles_the_students_learning_rate_after_the_plan_and_a_long_one_keeps_it():
    budgeted = {"steps": 499, "max_minutes": 10}  # the steps as the budget planned them
    config = from_dict({"train": budgeted})  # the default preset: 10 student updates a step, Adam at 0.002
    assert config.train.adapt == ["short_run"] and config.student.lr == 0.002
    networks, lines = adapt(config, BNTeacher(), conv())  # the networks' phase leaves the rule for the plan's
    assert lines == [] and networks.train.adapt == ["short_run"] and networks.student.lr == 0.002
    planned, lines = adapt(networks, BNTeacher(), conv(), phase="plan")
    (line,) = lines
    assert planned.student.lr == 0.004 and planned.train.adapt == [] and config.student.lr == 0.002
    assert "10-minute budget fits 4,990 student updates (499 steps x 10), fewer than 5,000" in line
    assert "0.002 -> 0.004" in line and line.endswith("(short_run)")
    assert adapt(planned, BNTeacher(), conv(), phase="plan")[0].student.lr == 0.004  # not twice
    for recipe in ({"train": {**budgeted, "steps": 500}},  # 5,000 updates: as the zoo's runs of 550-2,600 steps
                   {"train": {"steps": 499}},  # no budget: the recipe chose its length (the recipe check's runs)
                   {"train": budgeted, "student": {"optimizer": "sgd", "lr": 0.1}},  # measured with Adam only
                   {"train": budgeted, "student": {"lr": 0.001}},  # the recipe's own learning rate is kept
                   {"train": {**budgeted, "adapt": []}}):  # turned off
        same, lines = adapt(adapt(from_dict(recipe), BNTeacher(), conv())[0], BNTeacher(), conv(), phase="plan")
        assert lines == [] and same.student.lr == from_dict(recipe).student.lr and same.train.adapt == []
    fewer = from_dict({"train": {**budgeted, "steps": 900, "student_steps": 5}})  # 4,500 updates: counted, not steps
    assert adapt(fewer, BNTeacher(), conv(), phase="plan")[0].student.lr == 0.004
    with pytest.raises(ValueError, match="phase"):
        adapt(config, BNTeacher(), conv(), phase="later")
    both = from_dict({"train": {**budgeted, "adapt": ["no_conv_student", "short_run"]}})
    at_once, lines = adapt(both, BNTeacher(), mlp(), phase="plan")  # the networks' phase skipped: not dropped
    assert len(lines) == 2 and at_once.student.lr == 0.004 and weights(at_once)["class_feature_stats"] == 40.0


def test_an_unknown_rule_is_refused_naming_the_rules():
    with pytest.raises(ConfigError, match=r"train.adapt lists \['no_such'\].*no_conv_student"):
        adapt(from_dict({"train": {"adapt": ["no_such"]}}), BNTeacher(), mlp())


@pytest.mark.slow
def test_a_run_with_an_mlp_student_says_what_it_adapted_and_writes_the_recipe_as_it_ran(tmp_path, capsys):
    from datafree import distill_datafree
    from datafree.nets.feature_stats import record_teacher_stats

    torch.manual_seed(0)
    teacher = BNTeacher().eval()
    batches = [(torch.randn(16, 1, 16, 16), torch.arange(16) % 4) for _ in range(2)]
    _, per_class = record_teacher_stats(teacher, batches, num_classes=4, taps=["features.0.0", "features.2.0"])
    teacher.train()
    out = tmp_path / "run"
    train = {"steps": 2, "batch_size": 8, "eval_every": 2, "log_every": 1, "mixed_precision": "no", "output_dir": str(out)}
    results = distill_datafree(teacher, mlp(), image_size=16, channels=1, num_classes=4, mean=(0.3,), std=(0.35,),
                               train={**train, "adapt": ["no_conv_student", "no_norm_student"]},
                               class_feature_stats=per_class)  # fmt: skip
    line, second = results["adapted"]
    printed = capsys.readouterr().out
    assert "at 4x" in line and f"adapted to these networks: {line}" in printed and second in printed
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["adapt"] == [] and weights(from_dict({"synthesis": saved["synthesis"]}))["class_feature_stats"] == 40.0
    assert [term["name"] for term in saved["distill"]] == ["kd", "penultimate"]  # the MLP has no normalization either
    report = (out / "report.md").read_text()
    assert f"Adapted: {line}." in report and f"Adapted: {second}." in report
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["g_class_stats"] >= 0  # the term runs


@pytest.mark.slow
def test_a_budgeted_run_that_fits_few_steps_trains_its_student_at_twice_the_rate_and_says_so(tmp_path, capsys):
    from datafree import distill_datafree

    torch.manual_seed(0)
    out = tmp_path / "run"
    train = {"max_minutes": 0.3, "batch_size": 8, "eval_every": 1000, "log_every": 1, "mixed_precision": "no",
             "output_dir": str(out)}  # fmt: skip
    results = distill_datafree(BNTeacher(), conv(), image_size=16, channels=1, num_classes=4, mean=(0.3,),
                               std=(0.35,), train=train)  # fmt: skip
    (line,) = results["adapted"]
    assert line.endswith("(short_run)") and "0.002 -> 0.004" in line
    assert f"adapted to the planned run: {line}" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())
    assert saved["student"]["lr"] == 0.004 and saved["train"]["adapt"] == [] and saved["train"]["steps"] < 500
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["lr_s"] > 0.002  # the optimizer runs at the doubled rate (the cosine's first step is near its top)
    assert f"Adapted: {line}." in (out / "report.md").read_text()
