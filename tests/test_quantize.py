"""The quantize student wrapper (ternary / k-bit weights, straight-through) and the hard-label KD term."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from datafree import build
from datafree.distill import create_loss
from datafree.distill.objective import scheduled_weight
from datafree.nets.features import NetOutput
from datafree.pipeline import distill_from_config
from datafree.wrappers import create_student_wrapper
from datafree.wrappers.quantize import QuantConv2d, ternary, uniform
from tests.conftest import save_random_teacher, tiny_config


def test_ternary_by_hand():
    w = torch.tensor([[0.9, -0.1, -0.6, 0.2]])  # mean|w| = 0.45 -> Delta = 0.315; kept: 0.9, -0.6 -> alpha = 0.75
    q, alpha = ternary(w, threshold=0.7)
    assert torch.allclose(alpha, torch.tensor([0.75]))
    assert torch.allclose(q, torch.tensor([[0.75, 0.0, -0.75, 0.0]]))
    rows = torch.tensor([[1.0, 0.1], [0.0, -2.0]])  # per channel: row 0 Delta 0.385 -> alpha 1; row 1 Delta 0.7 -> 2
    q, alpha = ternary(rows, 0.7, per_channel=True)
    assert torch.allclose(alpha, torch.tensor([1.0, 2.0])) and torch.allclose(q, torch.tensor([[1.0, 0.0], [0.0, -2.0]]))


def test_uniform_four_bit_by_hand():
    w = torch.tensor([0.7, -0.35, 0.05, 0.0])  # s = 0.7 / 7 = 0.1: round(w / s) = 7, -4 (-3.5 rounds to even), 0 (0.5), 0
    q, step = uniform(w, bits=4)
    assert torch.allclose(step, torch.tensor([0.1]))
    assert torch.allclose(q, torch.tensor([0.7, -0.4, 0.0, 0.0]))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 3)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        x = torch.relu(self.norm(self.conv2(torch.relu(self.conv1(x)))))
        return self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3)))))


def test_wrapped_forward_equals_a_hand_quantized_copy_and_first_last_stay_float():
    torch.manual_seed(0)
    net = Net()
    by_hand = copy.deepcopy(net)
    wrapper = create_student_wrapper("quantize")
    wrapper.wrap(net)
    assert wrapper.wrapped == ["conv2", "fc1"]  # first_last = "float": conv1 and fc2 keep full precision
    assert isinstance(net.conv2, QuantConv2d) and type(net.conv1) is nn.Conv2d
    with torch.no_grad():
        for name in ("conv2", "fc1"):
            layer = getattr(by_hand, name)
            layer.weight.copy_(ternary(layer.weight)[0])
    x = torch.randn(5, 1, 6, 6)
    net.eval(), by_hand.eval()
    torch.testing.assert_close(net(x), by_hand(x), rtol=0, atol=1e-6)
    assert set(net.state_dict()) == set(by_hand.state_dict())  # same keys: shadow weights under "weight"


def test_straight_through_gradient_and_shadow_weights_move_while_the_forward_stays_ternary():
    torch.manual_seed(0)
    net = create_student_wrapper("quantize", first_last="quantize").wrap(Net())
    conv = net.conv2
    x = torch.randn(2, 4, 5, 5)
    out = conv(x)
    out.sum().backward()
    w = ternary(conv.weight)[0].requires_grad_()
    nn.functional.conv2d(x, w, conv.bias, padding=1).sum().backward()
    torch.testing.assert_close(conv.weight.grad, w.grad)  # dL/dw = dL/dq: the straight-through estimator
    before = conv.weight.detach().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    optimizer.step()
    assert not torch.equal(before, conv.weight)  # the shadow weights learn...
    q, _ = conv.quantized()
    assert torch.unique(q).numel() <= 3  # ...while the forward still sees three values


def test_unsupported_layer_names_are_refused_with_the_quantizable_ones():
    with pytest.raises(ValueError, match=r"'norm': 'BatchNorm2d'.*quantizable layers: \['conv1', 'conv2', 'fc1', 'fc2'\]"):
        create_student_wrapper("quantize", layers=["norm"]).wrap(Net())
    with pytest.raises(ValueError, match="bits must be"):
        create_student_wrapper("quantize", bits=16)


def test_decaying_kd_coefficient_and_the_hard_term():
    kd = {"weight": 1.0, "schedule": "linear", "end_weight": 0.2}
    assert [round(scheduled_weight(progress=p, **kd), 6) for p in (0.0, 0.5, 1.0)] == [1.0, 0.6, 0.2]
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    hard = create_loss("hard")(NetOutput(logits, {}), NetOutput(torch.tensor([[0.0, 5.0, 1.0]]), {}))
    assert hard.item() == pytest.approx(-torch.log_softmax(logits, dim=1)[0, 1].item())  # CE against argmax = 1


@pytest.mark.slow
def test_a_ternary_run_exports_folded_weights_that_a_plain_network_reproduces(tmp_path):
    config = tiny_config(tmp_path, student={"wrap": [{"name": "quantize"}]},
                         distill=[{"name": "kd", "schedule": "linear", "end_weight": 0.2},
                                  {"name": "hard", "weight": 0.0, "schedule": "linear", "end_weight": 0.8}])  # fmt: skip
    save_random_teacher(config)
    distill_from_config(config)
    out = tmp_path / "run"
    layers = json.loads((out / "quantization.json").read_text())["layers"]
    assert list(layers) == ["conv2", "conv3", "fc1"] and all(l["distinct_values"] <= 3 for l in layers.values())
    spec = build.image_spec(config)
    plain, wrapped = build.build_net("lenet5_half", spec), build.build_net("lenet5_half", spec)
    plain.load_state_dict(load_file(str(out / "student_quantized.safetensors")))
    create_student_wrapper("quantize").wrap(wrapped).load_state_dict(load_file(str(out / "student_last.safetensors")))
    x = torch.randn(4, 1, 32, 32)
    torch.testing.assert_close(plain.eval()(x), wrapped.eval()(x), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_the_decaying_coefficients_act_inside_a_run(tmp_path, monkeypatch):
    """The loop hands the objective its progress: the first update is KD alone, the last 0.2 KD + 0.8 hard."""
    from datafree.distill.objective import StudentWithLosses
    from datafree.pipeline import distill_from_config
    from tests.conftest import save_random_teacher

    config = tiny_config(tmp_path, distill=[{"name": "kd", "schedule": "linear", "end_weight": 0.2},
                                            {"name": "hard", "weight": 0.0, "schedule": "linear", "end_weight": 0.8}])  # fmt: skip
    save_random_teacher(config)
    seen = []
    forward = StudentWithLosses.forward

    def spy(self, x, teacher=None, progress=0.0):
        out = forward(self, x, teacher, progress)
        if teacher is not None:
            total, terms, _ = out
            seen.append((progress, float(total), float(terms["s_kd"] if "s_kd" in terms else terms["kd"]),
                         float(terms["s_hard"] if "s_hard" in terms else terms["hard"])))
        return out

    monkeypatch.setattr(StudentWithLosses, "forward", spy)
    results = distill_from_config(config)
    assert len(seen) >= results["steps"]
    first, last = seen[0], seen[-1]
    assert first[0] == 0.0 and first[1] == pytest.approx(first[2], rel=1e-5)  # weight 1 on KD, 0 on hard
    p = last[0]
    assert p > 0.7 and last[1] == pytest.approx((1 - 0.8 * p) * last[2] + 0.8 * p * last[3], rel=1e-4)
