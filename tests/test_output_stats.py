"""``class_output_stats``: the teacher's recorded answers per class (its logits' mean and spread on each class's
training images) as a prior for the generator; recorded beside the features, ignored by the feature terms."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from datafree.config import ConfigError
from datafree.nets.feature_stats import (OUTPUT_TAP, PENULTIMATE_TAP, channel_moments, load_reference, record_teacher_stats, save_reference,
                                    stats_path)  # fmt: skip
from datafree.synthesis import SynthBatch, create_synthesis_term
from datafree.synthesis.feature_stats import relative_gap
from tests.conftest import save_random_teacher, tiny_config


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 3))


def test_the_logits_are_recorded_per_class_beside_the_features():
    net, images = _net(), torch.randn(30, 1, 8, 8)
    labels = torch.arange(30) % 3
    pooled, per_class = record_teacher_stats(net, zip(images.split(7), labels.split(7)), num_classes=3)
    with torch.no_grad():
        logits = net(images)
    for k in range(3):  # by hand: the mean and biased variance of the logits over class k's images
        mean, var = channel_moments(logits[labels == k])
        torch.testing.assert_close(per_class[OUTPUT_TAP][0][k], mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(per_class[OUTPUT_TAP][1][k], var, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled[OUTPUT_TAP][0], logits.mean(0), atol=1e-5, rtol=1e-5)
    _, without = record_teacher_stats(net, zip(images.split(7), labels.split(7)), num_classes=3, outputs=False)
    assert set(without) == set(per_class) - {OUTPUT_TAP, PENULTIMATE_TAP, "0@images"}  # the layers alone


def test_the_term_against_a_hand_computation():
    term = create_synthesis_term("class_output_stats")
    # two classes, two logits; reference per class (mean, var) and the pooled scale the gap is measured in
    ref_mean, ref_var = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 1.0], [4.0, 1.0]])
    term.reference = {OUTPUT_TAP: (ref_mean, ref_var)}
    logits = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # class 0: mean (2, 0), var (1, 0)
    labels = torch.tensor([0, 0, 1, 1])  # class 1: mean (0, 1), var (0, 0)
    batch = SynthBatch(torch.zeros(4, 1, 2, 2), SimpleOutput(logits), labels)
    # pooled variance per logit: mean_k var_k + var_k mean_k = (2.5 + 1, 1 + 0.25) = (3.5, 1.25), floored by eps
    scale = torch.tensor([3.5, 1.25])
    scale = scale + 1e-3 * scale.mean()
    # class 0: mean gap 0; std gap rms((1-1)^2/s0, (0-1)^2/s1); class 1: mean gap 0; std gap rms((0-2)^2/s0, (0-1)^2/s1)
    gap0 = ((0.0 / scale[0] + 1.0 / scale[1]) / 2) ** 0.5
    gap1 = ((4.0 / scale[0] + 1.0 / scale[1]) / 2) ** 0.5
    assert term(batch).item() == pytest.approx(float((2 * gap0 + 2 * gap1) / 4), rel=1e-5)
    assert relative_gap(ref_mean, ref_var, ref_mean, ref_var, scale.expand(2, 2)).abs().max() < 1e-6


class SimpleOutput:
    """A teacher output with logits only (what the term reads)."""

    def __init__(self, logits: torch.Tensor):
        self.logits, self.features = logits, {}


def test_images_answered_like_the_training_images_score_near_zero_and_other_classes_do_not():
    net, images = _net(), torch.randn(60, 1, 8, 8)
    labels = torch.arange(60) % 3
    _, per_class = record_teacher_stats(net, zip(images.split(20), labels.split(20)), num_classes=3)
    term = create_synthesis_term("class_output_stats")
    term.reference = {OUTPUT_TAP: per_class[OUTPUT_TAP]}
    with torch.no_grad():
        logits = net(images)
    matched = term(SynthBatch(images, SimpleOutput(logits), labels)).item()
    shuffled = term(SynthBatch(images, SimpleOutput(logits), (labels + 1) % 3)).item()
    assert matched < 1e-3 < shuffled


@pytest.mark.slow
def test_a_run_reads_the_recorded_outputs_and_the_feature_terms_ignore_them(tmp_path):
    from datafree import build
    from datafree.pipeline import distill_from_config

    terms = [{"name": "onehot", "weight": 1.0}, {"name": "class_feature_stats", "weight": 1.0},
             {"name": "class_output_stats", "weight": 1.0}]  # fmt: skip
    config = tiny_config(tmp_path, synthesis=terms, train={"steps": 2, "eval_every": 2})
    save_random_teacher(config)
    spec = build.image_spec(config)
    teacher = build.load_teacher_net(config, spec)
    batches = [(torch.randn(20, 1, 32, 32), torch.arange(20) % 10)]
    path = stats_path(config.teacher_checkpoint)
    save_reference(*record_teacher_stats(teacher, batches, num_classes=10, outputs=False)[:1], path)  # pooled only
    with pytest.raises(ConfigError, match="per-class"):
        distill_from_config(config)
    pooled, per_class = record_teacher_stats(teacher, batches, num_classes=10, outputs=False)
    save_reference(pooled, path, per_class)  # a file recorded before the outputs were: the term says so
    with pytest.raises(ConfigError, match="no recorded teacher outputs.*python -m datafree.cli.feature_stats"):
        distill_from_config(config)
    from datafree.nets.feature_stats import has_class_stats, has_outputs

    assert has_class_stats(path) and not has_outputs(path)
    from datafree.supervised import ensure_for_recipe

    assert ensure_for_recipe(config) == path  # the recipe asks for the outputs: recorded again, with them
    assert OUTPUT_TAP in load_reference(path, per_class=True) and has_outputs(path)
    assert ensure_for_recipe(config) is None
    results = distill_from_config(config)
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert all(l["g_output_stats"] > 0 and l["g_class_stats"] > 0 for l in lines)
    assert any("teacher outputs (logits)" in use for use in results["uses"])


@pytest.mark.slow
def test_optional_without_recorded_outputs_is_left_out_with_a_note(tmp_path):
    from datafree import build
    from datafree.pipeline import distill_from_config

    terms = [{"name": "onehot", "weight": 1.0},
             {"name": "class_output_stats", "weight": 1.0, "params": {"optional": True}}]  # fmt: skip
    config = tiny_config(tmp_path, synthesis=terms, train={"steps": 2, "eval_every": 2})
    save_random_teacher(config)
    spec = build.image_spec(config)
    batches = [(torch.randn(20, 1, 32, 32), torch.arange(20) % 10)]  # recorded before the outputs were
    pooled, per_class = record_teacher_stats(build.load_teacher_net(config, spec), batches, 10, outputs=False)
    save_reference(pooled, stats_path(config.teacher_checkpoint), per_class)
    results = distill_from_config(config)
    assert any("class_output_stats off (optional)" in note for note in results["terms_off"])
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert "g_output_stats" not in lines[0]


@pytest.mark.slow
def test_the_python_call_reads_the_outputs_from_class_feature_stats(tmp_path):
    from datafree.api import distill_datafree

    teacher = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                            nn.Linear(16, 4))  # fmt: skip
    batches = [(torch.randn(16, 1, 16, 16), torch.arange(16) % 4)]
    pooled, per_class = record_teacher_stats(teacher, batches, num_classes=4)
    results = distill_datafree(teacher, nn.Sequential(nn.Flatten(), nn.Linear(256, 4)), image_size=16, channels=1,
                               num_classes=4, mean=(0.5,), std=(0.5,), preset="dafl",
                               synthesis={"class_feature_stats": 1.0, "class_output_stats": 1.0},
                               class_feature_stats=per_class, generator={"width": 8, "latent_dim": 8},
                               train={"steps": 2, "batch_size": 8, "output_dir": str(tmp_path / "r")})  # fmt: skip
    lines = [json.loads(l) for l in open(tmp_path / "r" / "metrics.jsonl")]
    assert all(l["g_output_stats"] > 0 and l["g_class_stats"] > 0 for l in lines)
    assert any("teacher outputs (logits) passed as class_feature_stats=" in use for use in results["uses"])  # the argument it came as
