"""The normalized (scale-invariant) feature-statistics terms: a hand computation and the invariances they claim."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from datafree.nets.feature_stats import batchnorm_reference
from datafree.nets.features import FeatureTaps
from datafree.synthesis.feature_stats import (feature_stats_loss, relative_class_feature_stats_loss,
                                              relative_feature_stats_loss)  # fmt: skip


def test_relative_loss_by_hand():
    # one layer, 2 channels, batch of 2 images of 1x1: channel 0 = [1, 3] (mean 2, var 1), channel 1 = [0, 0]
    x = torch.tensor([[[[1.0]], [[0.0]]], [[[3.0]], [[0.0]]]])
    ref = {"f": (torch.tensor([0.0, 1.0]), torch.tensor([4.0, 1.0]))}
    # sigma^2 = ref_var + 1e-3 * mean(ref_var) = [4.0025, 1.0025]
    s2 = [4.0 + 1e-3 * 2.5, 1.0 + 1e-3 * 2.5]
    mean_gap = math.sqrt(((2 - 0) ** 2 / s2[0] + (0 - 1) ** 2 / s2[1]) / 2)
    std_gap = math.sqrt(((1 - 2) ** 2 / s2[0] + (0 - 1) ** 2 / s2[1]) / 2)
    got = relative_feature_stats_loss({"f": x}, ref)
    assert abs(got.item() - (mean_gap + std_gap)) < 1e-5
    # two identical layers average, they do not add (the raw DeepInversion form adds)
    two = relative_feature_stats_loss({"f": x, "g": x}, {**ref, "g": ref["f"]})
    assert abs(two.item() - got.item()) < 1e-6
    raw = feature_stats_loss({"f": x, "g": x}, {**ref, "g": ref["f"]})
    assert abs(raw.item() - 2 * feature_stats_loss({"f": x}, ref).item()) < 1e-5


def test_class_relative_loss_by_hand_uses_the_pooled_scale_and_skips_singletons():
    # class 0: images 0, 1 (values 1, 3); class 1: image 2 alone (skipped)
    x = torch.tensor([1.0, 3.0, 7.0]).view(3, 1, 1, 1)
    labels = torch.tensor([0, 0, 1])
    ref_mean, ref_var = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [3.0]])
    pooled = 2.0 + 1.0  # mean_k var = 2, var_k mean = 1
    s2 = pooled * (1 + 1e-3)
    expected = math.sqrt((2 - 0) ** 2 / s2) + math.sqrt((1 - 1) ** 2 / s2)
    got = relative_class_feature_stats_loss({"f": x}, {"f": (ref_mean, ref_var)}, labels)
    assert abs(got.item() - expected) < 1e-5


class Net(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _trained_bn_net(width: int = 8) -> Net:
    torch.manual_seed(0)
    net = Net(width)
    net.train()
    with torch.no_grad():
        for _ in range(20):
            net(torch.randn(16, 1, 8, 8) * 2 + 0.5)
    return net.eval()


def _losses(net: Net, images: torch.Tensor) -> tuple[float, float]:
    reference = batchnorm_reference(net)
    taps = FeatureTaps(net, list(reference))
    try:
        features = taps.run(images).features
    finally:
        taps.remove()
    return relative_feature_stats_loss(features, reference).item(), feature_stats_loss(features, reference).item()


def test_scaling_a_layers_channels_leaves_the_relative_term_unchanged_and_moves_the_raw_one():
    net = _trained_bn_net()
    scaled = copy.deepcopy(net)
    s = 7.0  # conv2's output (bn2's input) times s; bn2's running statistics follow, so the net's logits do not move
    with torch.no_grad():
        scaled.conv2.weight.mul_(s)
        scaled.conv2.bias.mul_(s)
        scaled.bn2.running_mean.mul_(s)
        scaled.bn2.running_var.mul_(s * s)
    images = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(images), scaled(images), atol=1e-3)  # the same function
    relative, raw = _losses(net, images)
    relative_scaled, raw_scaled = _losses(scaled, images)
    assert abs(relative - relative_scaled) < 1e-3 * relative
    assert raw_scaled > 2 * raw  # DeepInversion's form depends on the layer's units


def test_channel_count_does_not_scale_the_relative_term():
    # the same per-channel gap in every channel gives the same value for 4 channels and for 64
    for channels in (4, 64):
        x = torch.randn(64, channels, 4, 4)
        mean, var = x.transpose(0, 1).flatten(1).mean(1), x.transpose(0, 1).flatten(1).var(1, unbiased=False)
        ref = {"f": (mean - var.sqrt(), var)}  # one reference standard deviation off in every channel
        value = relative_feature_stats_loss({"f": x}, ref).item()
        assert abs(value - 1.0) < 1e-2, (channels, value)


def test_moments_from_image_rows_match_the_full_tensor_and_are_computed_once_per_batch():
    from datafree.nets.features import NetOutput, channel_moments, image_moments, pooled_moments
    from datafree.synthesis.base import SynthBatch
    from datafree.synthesis.feature_stats import ClassFeatureStats, FeatureStats

    torch.manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(6, 4, 5, 5)  # mean far from 0: E[x^2] - E[x]^2 must still be accurate
    mean, var = pooled_moments(*image_moments(x))
    want_mean, want_var = channel_moments(x)
    assert torch.allclose(mean, want_mean, atol=1e-5) and torch.allclose(var, want_var, rtol=1e-4)
    # a 2-D (N, C) tap has no space: the rows are the values and their squares
    first, second = image_moments(torch.tensor([[1.0, -2.0]]))
    assert first.tolist() == [[1.0, -2.0]] and second.tolist() == [[1.0, 4.0]]

    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    reference = {"f": (torch.zeros(4), torch.ones(4))}
    per_class = {"f": (torch.zeros(2, 4), torch.ones(2, 4))}
    batch = SynthBatch(x, NetOutput(torch.zeros(6, 2), {"f": x}), labels)
    pooled_term, class_term = FeatureStats(normalized=True), ClassFeatureStats(normalized=True)
    pooled_term.reference, class_term.reference = reference, per_class
    calls = []
    original = batch.image_moments.__func__
    batch.image_moments = lambda tap: calls.append(tap) or original(batch, tap)
    got_pooled, got_class = pooled_term(batch), class_term(batch)
    assert calls == ["f", "f"] and list(batch._moments) == ["f"]  # two terms asked, one pass over the features
    assert abs(got_pooled.item() - relative_feature_stats_loss({"f": x}, reference).item()) < 1e-6
    assert abs(got_class.item() - relative_class_feature_stats_loss({"f": x}, per_class, labels).item()) < 1e-6
    assert got_pooled.item() > 1.0  # mean 3, std 2 against the reference's 0 and 1: far off


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_image_moments_gradient_is_autograds_own_in_one_pass(layout):
    """The fused backward (dL/dx = (g1 + 2 g2 x) / HW) against autograd through the plain formulas; a missing
    factor 2, a wrong divisor or a dropped first-moment gradient would differ by far more than rounding."""
    from datafree.nets.features import image_moments

    torch.manual_seed(0)
    x = (1.5 + torch.randn(3, 4, 5, 6)).to(memory_format=layout)
    w1, w2 = torch.randn(3, 4), torch.randn(3, 4)
    fused = x.clone().requires_grad_(True)
    first, second = image_moments(fused)
    ((first * w1).sum() + (second * w2).sum()).backward()
    plain = x.clone().requires_grad_(True)
    ((plain.mean((2, 3)) * w1).sum() + ((plain * plain).mean((2, 3)) * w2).sum()).backward()
    assert torch.allclose(first, plain.mean((2, 3))) and torch.allclose(second, (x * x).mean((2, 3)))
    assert torch.allclose(fused.grad, plain.grad, atol=1e-6)
    assert fused.grad.is_contiguous(memory_format=layout)  # the gradient keeps the feature's layout
    # only one moment used: the other's gradient is absent (None), not an error
    only = x.clone().requires_grad_(True)
    image_moments(only)[1].sum().backward()
    assert torch.allclose(only.grad, 2 * x / 30, atol=1e-6)
    # a bf16 feature (a bf16 forward) gets a bf16 gradient
    half = x.to(torch.bfloat16).requires_grad_(True)
    image_moments(half)[0].sum().backward()
    assert half.grad.dtype == torch.bfloat16 and torch.allclose(half.grad.float(), torch.full_like(x, 1 / 30), rtol=1e-2)
