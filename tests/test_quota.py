"""The quota callback (datafree/callbacks/quota.py): labels by hand, the gap's update by hand, the generator told its classes,
resume exact, bad values refused."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from datafree.nets.features import NetOutput
from datafree.callbacks.quota import ClassQuota, stratified_labels
from datafree.synthesis import SynthBatch
from tests.conftest import asked_and_targeted, assert_same_weights, crash_then_resume, save_random_teacher, tiny_config


def test_stratified_labels_by_hand():
    assert stratified_labels(torch.tensor([0.5, 0.25, 0.25]), 8).tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    # uniform over 10 classes, 64 positions: class k takes the i with k/10 <= (i + 1/2)/64 < (k + 1)/10
    counts = torch.bincount(stratified_labels(torch.full((10,), 0.1), 64), minlength=10).tolist()
    assert counts == [6, 7, 6, 7, 6, 6, 7, 6, 7, 6]
    assert stratified_labels(torch.tensor([0.0, 1.0]), 3).tolist() == [1, 1, 1]  # a zero share gets no image


def _loop(student_logits):
    return SimpleNamespace(frozen_student_logits=lambda images: student_logits, student_net=torch.nn.Identity(),
                           accelerator=SimpleNamespace(num_processes=1))  # fmt: skip


def test_the_gap_moves_the_shares_as_the_docstring_computes():
    quota = ClassQuota(0.5, num_classes=3)
    assert quota.labels(6, "cpu").tolist() == [0, 0, 1, 1, 2, 2]  # before any measurement: balanced
    teacher = torch.zeros(4, 3)  # softmax (1/3, 1/3, 1/3)
    student = torch.zeros(4, 3)
    student[2:, 0] = math.log(4)  # images 2, 3 (asked for class 1): softmax (2/3, 1/6, 1/6), L1 gap 2/3
    batch = SynthBatch(torch.zeros(4, 1, 2, 2), NetOutput(teacher, {}), labels=torch.tensor([0, 0, 1, 1]))
    quota.on_synthesized(_loop(student), 0, batch)
    # first measurement: class 0 gap 0, class 1 gap 2/3, class 2 absent -> the mean of the measured classes (1/3)
    torch.testing.assert_close(quota.gap, torch.tensor([0.0, 2 / 3, 1 / 3]))
    shares = quota.shares("cpu")
    torch.testing.assert_close(shares, 0.5 / 3 + 0.5 * torch.tensor([0.0, 2 / 3, 1 / 3]))
    # second: class 0 now disagrees by 2/3, class 1 agrees; class 2 absent keeps its gap
    student2 = torch.zeros(4, 3)
    student2[:2, 0] = math.log(4)
    quota.on_synthesized(_loop(student2), 1, batch)
    torch.testing.assert_close(quota.gap, torch.tensor([0.1 * 2 / 3, 0.9 * 2 / 3, 1 / 3]))
    assert abs(float(quota.shares("cpu").sum()) - 1) < 1e-6
    restored = ClassQuota(0.5, 3)
    restored.load_state_dict(quota.state_dict())
    assert torch.equal(restored.labels(64, "cpu"), quota.labels(64, "cpu"))


def test_the_conditional_generator_is_asked_for_the_quota_labels_and_the_objective_targets_them(tmp_path):
    trainer, asked, targeted = asked_and_targeted(tmp_path, {"quota": 0.6})
    quota = next(c for c in trainer.callbacks if isinstance(c, ClassQuota))
    assert quota.gap is not None and not torch.allclose(quota.shares("cpu"), torch.full((10,), 0.1))
    # per step: G's batch (16, the objective's labels) then two fresh batches of 8, each from the shares of that step
    assert [len(a) for a in asked] == [16, 8, 8] * 3
    assert all(torch.equal(asked[3 * s], targeted[s]) for s in range(3))
    # fresh batches of 8 hold fewer than the 10 classes: their windows rotate (datafree/callbacks/rotation.py); rewound by the
    # last two, the quota gives the second-to-last batch again
    quota.order_of_classes.batches -= 2
    assert torch.equal(asked[-2], quota.labels(8, "cpu")) and torch.equal(asked[-3], targeted[-1])
    assert set(torch.cat(asked[1::3]).tolist()) == set(range(10))  # every class in a fresh batch, though 8 < 10
    shares = quota.shares("cpu")
    assert float(shares.min()) >= 0.4 / 10 - 1e-6  # every class keeps (1 - q) / K


@pytest.mark.slow
def test_a_quota_run_logs_its_shares_and_resumes_exactly(tmp_path, monkeypatch):
    from datafree.pipeline import distill_from_config

    sections = {"generator": {"conditional": True, "quota": 0.5}}
    straight = tiny_config(tmp_path / "a", **sections)
    save_random_teacher(straight)
    results = distill_from_config(straight)
    lines = [json.loads(l) for l in open(f"{straight.train.output_dir}/metrics.jsonl")]
    assert all(abs(sum(l["class_quota"]) - 1) < 1e-3 for l in lines) and results["class_quota"] == lines[-1]["class_quota"]
    resumed = tiny_config(tmp_path / "b", **sections)
    save_random_teacher(resumed)
    crash_then_resume(resumed, monkeypatch)  # the shares at the checkpoint come back, so the same labels follow
    assert_same_weights(straight.train.output_dir, resumed.train.output_dir)


@pytest.mark.parametrize("generator, message", [({"conditional": True, "quota": 1.0}, "in \\(0, 1\\)"),
                                                ({"quota": 0.5}, "generator.conditional = true")])  # fmt: skip
def test_bad_quota_values_are_refused_with_the_fix(tmp_path, generator, message):
    from datafree.build import check_callbacks
    from datafree.config import ConfigError

    config = tiny_config(tmp_path, generator=generator)  # the old spelling (generator.quota): onto [[callbacks]]
    assert [c.name for c in config.callbacks] == ["quota"]
    with pytest.raises(ConfigError, match=message):
        check_callbacks(config, 10)
