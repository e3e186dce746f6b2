"""``class_penultimate_stats``: the teacher's penultimate features per class (mean and spread across each class's
training images), recorded beside the other statistics, as a prior for the generator; the feature terms ignore it."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from datafree.nets.feature_stats import PENULTIMATE_TAP, load_reference, record_teacher_stats, save_reference, stats_path
from datafree.nets.features import NetOutput
from datafree.synthesis import SynthBatch, create_synthesis_term
from tests.conftest import save_random_teacher, tiny_config


def test_the_term_against_a_hand_computation_of_the_spread_between_images():
    term = create_synthesis_term("class_penultimate_stats")
    ref_mean, ref_var = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 1.0], [4.0, 1.0]])
    term.reference = {"fc:input": (ref_mean, ref_var)}
    features = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # class 0: mean (2, 0), var (1, 0)
    labels = torch.tensor([0, 0, 1, 1])  # class 1: mean (0, 1), var (0, 0): two identical images have no spread
    batch = SynthBatch(torch.zeros(4, 1, 2, 2), NetOutput(torch.zeros(4, 2), {"fc:input": features}), labels)
    # the pooled scale per feature: mean_k var_k + var_k mean_k = (2.5 + 1, 1 + 0.25), floored by eps
    scale = torch.tensor([3.5, 1.25])
    scale = scale + 1e-3 * scale.mean()
    gap0 = ((0.0 / scale[0] + 1.0 / scale[1]) / 2) ** 0.5  # means equal; stds (1, 0) against (1, 1)
    gap1 = ((4.0 / scale[0] + 1.0 / scale[1]) / 2) ** 0.5  # means equal; stds (0, 0) against (2, 1)
    assert term(batch).item() == pytest.approx(float((2 * gap0 + 2 * gap1) / 4), rel=1e-5)
    assert term.teacher_taps == ("fc:input",)  # the teacher's forward must hand over that layer


def test_a_batch_as_spread_as_the_training_images_scores_near_zero_and_a_collapsed_one_does_not():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 3))
    images, labels = torch.randn(60, 1, 8, 8), torch.arange(60) % 3
    _, per_class = record_teacher_stats(net, zip(images.split(20), labels.split(20)), num_classes=3)
    term = create_synthesis_term("class_penultimate_stats")
    term.reference = {"3:input": per_class[PENULTIMATE_TAP]}  # the Linear's input, as the term's setup names it
    features = nn.Sequential(*net[:3])(images).detach()
    spread = term(SynthBatch(images, NetOutput(net(images), {"3:input": features}), labels)).item()
    collapsed = features[labels.argsort()][::20].repeat_interleave(20, dim=0)  # one image per class, 20 times
    narrow = term(SynthBatch(images, NetOutput(net(images), {"3:input": collapsed}), labels.sort().values)).item()
    assert spread < 1e-3 < narrow


@pytest.mark.slow
def test_a_run_reads_the_recorded_penultimate_features_and_an_old_file_is_recorded_again(tmp_path):
    from datafree import build
    from datafree.supervised import ensure_for_recipe
    from datafree.nets.feature_stats import has_outputs
    from datafree.pipeline import distill_from_config

    terms = [{"name": "onehot", "weight": 1.0}, {"name": "class_feature_stats", "weight": 1.0},
             {"name": "class_penultimate_stats", "weight": 1.0}]  # fmt: skip
    config = tiny_config(tmp_path, synthesis=terms, train={"steps": 2, "eval_every": 2})
    save_random_teacher(config)
    spec = build.image_spec(config)
    teacher = build.load_teacher_net(config, spec)
    batches = [(torch.randn(20, 1, 32, 32), torch.arange(20) % 10)]
    path = stats_path(config.teacher_checkpoint)
    pooled, per_class = record_teacher_stats(teacher, batches, num_classes=10, outputs=False)
    save_reference(pooled, path, per_class)  # a file recorded before the penultimate features were
    assert not has_outputs(path, PENULTIMATE_TAP)
    assert ensure_for_recipe(config) == path and has_outputs(path, PENULTIMATE_TAP)
    assert tuple(load_reference(path, per_class=True)[PENULTIMATE_TAP][0].shape) == (10, 120)  # LeNet-5's flatten
    assemble = build.assemble(config, build.build_teacher(config, spec), build.build_net("lenet5_half", spec), spec,
                              build.make_accelerator(config))  # fmt: skip
    penultimate, stats = assemble.objective.terms[2], assemble.objective.terms[1]
    assert penultimate.teacher_taps == ("flatten",) and PENULTIMATE_TAP not in stats.teacher_taps
    assert "flatten" not in stats.teacher_taps  # the per-class feature prior reads the conv layers only, as before
    results = distill_from_config(config)
    lines = [json.loads(line) for line in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert all(line["g_penultimate_stats"] > 0 for line in lines)
    assert any("penultimate features" in use for use in results["uses"])
