"""The penultimate-feature loss (datafree/distill/penultimate.py): its value, its invariances, its default taps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from datafree.distill import create_loss
from datafree.distill.penultimate import PenultimateFeatures
from datafree.nets.features import NetOutput


def _loss(student_width: int, teacher_widths: dict[str, int]) -> PenultimateFeatures:
    loss = create_loss("penultimate", student_layers=["f"], teacher_layers=list(teacher_widths))
    loss.setup({"f": (student_width,)}, {k: (w,) for k, w in teacher_widths.items()})
    return loss


def test_value_is_one_minus_the_per_image_correlation_computed_by_hand():
    torch.manual_seed(0)
    loss = _loss(5, {"g": 4})
    f_s, f_t = torch.randn(3, 5), torch.rand(3, 4) * 3  # post-ReLU-like teacher features
    mapped = loss.maps[0](f_s).detach().numpy()
    want = np.mean([1 - np.corrcoef(mapped[i], f_t[i].numpy())[0, 1] for i in range(3)])
    got = loss(NetOutput(torch.zeros(3, 2), {"f": f_s}), NetOutput(torch.zeros(3, 2), {"g": f_t}))
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_the_teachers_feature_scale_and_offset_do_not_change_it_and_a_matching_student_scores_zero():
    """The claim that makes one weight serve every teacher: c * f_t + b (c > 0, per image) gives the same loss."""
    torch.manual_seed(1)
    loss = _loss(4, {"g": 4})
    f_s, f_t = torch.randn(6, 4), torch.rand(6, 4)
    student = NetOutput(torch.zeros(6, 2), {"f": f_s})
    base = loss(student, NetOutput(torch.zeros(6, 2), {"g": f_t}))
    shifted = loss(student, NetOutput(torch.zeros(6, 2), {"g": 7.5 * f_t + torch.randn(6, 1)}))
    assert base.item() > 0.1 and shifted.item() == pytest.approx(base.item(), rel=1e-5)
    with torch.no_grad():  # the map turns the student's features into 2 f_t + 1: perfect correlation
        loss.maps[0].weight.copy_(2 * torch.eye(4))
        loss.maps[0].bias.fill_(1.0)
    same = loss(NetOutput(torch.zeros(6, 2), {"f": f_t}), NetOutput(torch.zeros(6, 2), {"g": f_t}))
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    flipped = loss(NetOutput(torch.zeros(6, 2), {"f": -f_t}), NetOutput(torch.zeros(6, 2), {"g": f_t}))
    assert flipped.item() == pytest.approx(2.0, abs=1e-5)  # anti-correlated: the bound


def test_several_teachers_average_one_map_each():
    torch.manual_seed(2)
    loss = _loss(5, {"m0/g": 4, "m1/g": 3})
    assert [m.out_features for m in loss.maps] == [4, 3]
    f_s = torch.randn(4, 5)
    t = {"m0/g": torch.rand(4, 4), "m1/g": torch.rand(4, 3)}
    both = loss(NetOutput(torch.zeros(4, 2), {"f": f_s}), NetOutput(torch.zeros(4, 2), t)).item()
    singles = []
    for i, name in enumerate(t):
        one = _loss(5, {name: t[name].shape[1]})
        one.maps[0].load_state_dict(loss.maps[i].state_dict())
        singles.append(one(NetOutput(torch.zeros(4, 2), {"f": f_s}), NetOutput(torch.zeros(4, 2), {name: t[name]})).item())
    assert both == pytest.approx(sum(singles) / 2, rel=1e-6)


def test_default_layers_are_every_networks_penultimate_tap_and_bad_lists_fail():
    from datafree.models import create_model
    from datafree.teachers.base import Member

    student = create_model("resnet8_narrow", num_classes=10, in_channels=1)
    members = [Member("m0/", create_model("vgg_bn_small", num_classes=10, in_channels=1)),
               Member("m1/", nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 10)))]
    params = PenultimateFeatures.default_layers({}, student, members)
    assert params == {"student_layers": ["flatten"], "teacher_layers": ["m0/head.2", "m1/3:input"]}
    assert PenultimateFeatures.default_layers({"student_layers": ["x"]}, student, members)["student_layers"] == ["x"]
    with pytest.raises(ValueError, match="ONE layer"):
        create_loss("penultimate", student_layers=["a", "b"])
    with pytest.raises(ValueError, match="not set"):
        create_loss("penultimate").setup({}, {})
    with pytest.raises(ValueError, match="no shape given for teacher layer 'g'"):
        create_loss("penultimate", student_layers=["f"], teacher_layers=["g"]).setup({"f": (4,)}, {})


def test_the_loop_trains_its_map_on_the_folded_teachers_features(tmp_path):
    """In a run: the labeller is the folded copy, tapped at the teacher's penultimate layer; a step moves the map."""
    from tests.conftest import folded_feature_run

    trainer = folded_feature_run(tmp_path, [{"name": "kd"}, {"name": "penultimate"}], ["head.2"])
    loss = next(m for m in trainer.student.modules() if isinstance(m, PenultimateFeatures))
    before = loss.maps[0].weight.detach().clone()
    trainer.train_step(0)
    assert not torch.equal(before, loss.maps[0].weight)
