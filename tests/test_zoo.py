"""The teacher zoo's families: build by name, take 28x28 and 32x32 images, carry BatchNorm, rebuild from widths."""

from __future__ import annotations

import pytest
import torch

from datafree.nets.feature_stats import batchnorm_reference
from datafree.nets.features import FeatureTaps
from datafree.models import create_model

# teacher -> student of its family, and the student's parameter budget (10 classes, 1 channel)
PAIRS = {"vgg_bn": "vgg_bn_small", "resnet20": "resnet8_narrow", "mobilenet_small": "mobilenet_tiny"}


@pytest.mark.parametrize("teacher,student", list(PAIRS.items()))
def test_zoo_pairs_take_both_image_sizes_and_students_are_edge_sized(teacher, student):
    nets = {name: create_model(name, num_classes=10, in_channels=1).eval() for name in (teacher, student)}
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    assert 15_000 <= params[student] <= 60_000 and params[teacher] > 2 * params[student]
    for name, net in nets.items():
        assert batchnorm_reference(net), f"{name} has no BatchNorm statistics"
        taps = FeatureTaps(net, [net.feature_layer, *net.default_taps])
        for size in (28, 32):
            out = taps.run(torch.randn(3, 1, size, size))
            assert out.logits.shape == (3, 10)
            assert out.features[net.feature_layer].flatten(1).shape[0] == 3


def test_widths_are_keyword_arguments_so_a_found_shape_rebuilds_by_name():
    narrow = create_model("vgg_bn", num_classes=10, in_channels=1, widths=(8, 8, 16, 16, 32), hidden=32)
    assert [m.out_channels for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)] == [8, 8, 16, 16, 32]
    assert create_model("resnet8", num_classes=10, in_channels=1, width=8).fc.in_features == 32
    with pytest.raises(ValueError, match="does not take"):
        create_model("resnet8", num_classes=10, in_channels=1, widths=(1,))


@pytest.mark.parametrize("strided,plain", [("resnet20_s2", "resnet20"), ("resnet8_narrow_s2", "resnet8_narrow"),
                                           ("mobilenet_small_s2", "mobilenet_small"),
                                           ("mobilenet_tiny_s2", "mobilenet_tiny")])
def test_stride_two_stem_runs_the_stages_of_a_64px_image_at_32px(strided, plain):
    """The _s2 variants (for the 64-px task) have the same weights' shapes as their 32-px layout, and their
    stages see a 64-px image at the size the 32-px layout's stages see a 32-px one."""
    nets = {name: create_model(name, num_classes=10, in_channels=3).eval() for name in (strided, plain)}
    assert [p.shape for p in nets[strided].parameters()] == [p.shape for p in nets[plain].parameters()]
    first, last = type(nets[plain]).default_taps[0], type(nets[plain]).default_taps[-1]
    seen = {}
    for name, net in nets.items():
        size = 64 if name == strided else 32
        out = FeatureTaps(net, [first, last]).run(torch.randn(2, 3, size, size))
        assert out.logits.shape == (2, 10)
        seen[name] = (out.features[first].shape, out.features[last].shape)
    assert seen[strided] == seen[plain]  # a stem of stride 1 would give the 64-px image maps twice as large
