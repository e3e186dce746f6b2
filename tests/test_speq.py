"""Activation quantization in the quantize wrapper and SPEQ's stochastic-precision self-teacher."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from datafree import build
from datafree.config import ConfigError
from datafree.distill import create_loss
from datafree.nets.features import NetOutput
from datafree.pipeline import distill_from_config
from datafree.teachers.speq import SelfTeacher
from datafree.wrappers import create_student_wrapper
from datafree.wrappers.quantize import quantize_activation
from tests.conftest import assert_same_weights, crash_then_resume, save_random_teacher, tiny_config

SPEQ = {"teacher": {"kind": "speq"}, "student": {"wrap": [{"name": "quantize", "params": {"bits": 4, "act_bits": 2}}]},
        "distill": [{"name": "kd"}, {"name": "speq"}]}  # fmt: skip


def test_activation_quantization_by_hand_per_sample_and_straight_through():
    # sample 0: lo 0, hi 3, 2 bits -> step 1: 0.4 -> 0, 1.6 -> 2, 2.5 -> 2 (half to even), 3 -> 3
    # sample 1: lo -1, hi 1 -> step 2/3: 0.2 -> -1 + 2/3 * round(1.8) = 1/3
    x = torch.tensor([[0.0, 0.4, 1.6, 2.5, 3.0], [-1.0, 0.2, 1.0, 1.0, 1.0]], requires_grad=True)
    q = quantize_activation(x, 2)
    assert torch.allclose(q[0], torch.tensor([0.0, 0.0, 2.0, 2.0, 3.0]))
    assert torch.allclose(q[1, :2], torch.tensor([-1.0, 1 / 3]))
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # straight through
    assert quantize_activation(x, 0) is x  # 0 bits: float, untouched
    # one image's output does not depend on its batch
    torch.testing.assert_close(quantize_activation(x[:1], 2), q[:1], rtol=0, atol=0)


def test_a_wrapped_layer_multiplies_its_k_bit_input_by_its_quantized_weight():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    create_student_wrapper("quantize", bits=8, act_bits=3).wrap(net)
    x = torch.relu(net[0](torch.randn(2, 6))).detach()
    lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)  # by hand: 3 bits = 7 steps per image's range
    by_hand = lo + (hi - lo) / 7 * torch.round((x - lo) / ((hi - lo) / 7))
    assert all(len(torch.unique(row)) <= 8 for row in by_hand)
    weight, _ = net[2].quantized()
    torch.testing.assert_close(net[2](x), by_hand @ weight.T + net[2].bias, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="act_bits must be 0"):
        create_student_wrapper("quantize", act_bits=1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc4(torch.relu(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))))


class Real(nn.Module):
    def forward(self, x):
        return NetOutput(x[:, :3] * 0, {"t": x})


def test_bit_widths_are_drawn_per_layer_reproducibly_and_the_student_is_restored():
    torch.manual_seed(0)
    net = create_student_wrapper("quantize", bits=8, act_bits=4).wrap(Net()).train()
    teacher = SelfTeacher(Real(), [2, 4, 8, 0], seed=7)
    teacher.bind(net)
    assert len(teacher.layers) == 2  # fc2, fc3 (first and last stay float)
    draws = [teacher.draw() for _ in range(40)]
    assert len({tuple(d) for d in draws}) > 4 and any(d[0] != d[1] for d in draws)  # per layer, per batch
    again = SelfTeacher(Real(), [2, 4, 8, 0], seed=7)
    again.bind(net)
    assert [again.draw() for _ in range(40)] == draws
    other = SelfTeacher(Real(), [2, 4, 8, 0], seed=8)
    other.bind(net)
    assert [other.draw() for _ in range(40)] != draws
    # the forward: the drawn widths are used, then the student's own come back (and train mode)
    x = torch.randn(5, 8)
    teacher.draws = 3
    out = teacher(x)
    assert [m.act_bits for m in teacher.layers] == [4, 4] and net.training and teacher.draws == 4
    expected = net.eval()
    for layer, bits in zip(teacher.layers, draws[3]):
        layer.act_bits = bits
    torch.testing.assert_close(out.features["self/logits"], expected(x), rtol=0, atol=0)
    assert torch.equal(out.features["t"], x) and not out.features["self/logits"].requires_grad


def test_the_papers_draw_never_runs_a_layer_under_its_target_width_and_a_fixed_list_is_kept_as_an_option():
    torch.manual_seed(0)
    net = create_student_wrapper("quantize", bits=8, act_bits=4).wrap(Net()).train()
    teacher = SelfTeacher(Real(), None, seed=3)  # the default: each layer's target (4) or higher, or float
    teacher.bind(net)
    drawn = {b for _ in range(200) for b in teacher.draw()}
    assert drawn == {4, 5, 6, 7, 8, 0}  # never 2 or 3: those would teach the 4-bit student from below its own width
    net.fc2.act_bits = 6  # targets are per layer
    assert all(d[0] in (6, 7, 8, 0) and d[1] in (4, 5, 6, 7, 8, 0) for d in (teacher.draw() for _ in range(50)))
    fixed = SelfTeacher(Real(), [2, 3], seed=3)  # a list given: every layer draws from it, as before
    fixed.bind(net)
    assert {b for _ in range(50) for b in fixed.draw()} == {2, 3}


def test_speq_loss_is_the_cosine_term_against_the_self_teachers_logits():
    student = torch.tensor([[2.0, 0.0, -1.0]])
    own = torch.tensor([[0.0, 1.0, 0.0]])
    p, q = torch.softmax(student, 1)[0], torch.softmax(own, 1)[0]
    expected = 1 - float(p @ q / (p.norm() * q.norm()))
    loss = create_loss("speq")
    value = loss(NetOutput(student, {}), NetOutput(torch.zeros(1, 3), {"self/logits": own}))
    assert value.item() == pytest.approx(expected, abs=1e-6)
    assert loss.teacher_taps == ("self/logits",)


@pytest.mark.slow
def test_a_speq_run_trains_resumes_bit_for_bit_and_records_the_draw_counter(tmp_path, monkeypatch):
    whole = tiny_config(tmp_path / "whole", **SPEQ)
    save_random_teacher(whole)
    drawn = []
    draw = SelfTeacher.draw
    monkeypatch.setattr(SelfTeacher, "draw", lambda self: drawn.append(draw(self)) or drawn[-1])
    results = distill_from_config(whole)
    monkeypatch.undo()
    lines = [json.loads(line) for line in (tmp_path / "whole" / "run" / "metrics.jsonl").read_text().splitlines()]
    speq = [line["s_speq"] for line in lines if "s_speq" in line]
    assert len(speq) == len(lines) == results["steps"] and all(0 < v < 1 for v in speq)  # cosine distances, logged
    # a 2-bit student's teacher: each layer at 2..8 bits or float, per layer and per batch
    assert len(drawn) >= results["steps"] and all(b == 0 or 2 <= b <= 8 for d in drawn for b in d)
    assert len({b for d in drawn for b in d}) >= 4 and len({tuple(d) for d in drawn}) > 1
    cut = tiny_config(tmp_path / "cut", **SPEQ)
    save_random_teacher(cut)
    crash_then_resume(cut, monkeypatch)
    assert_same_weights(tmp_path / "whole" / "run", tmp_path / "cut" / "run")


def test_speq_without_activation_quantization_or_without_its_teacher_kind_fails_before_step_0(tmp_path):
    config = tiny_config(tmp_path, teacher={"kind": "speq"}, distill=[{"name": "speq"}])
    save_random_teacher(config)
    with pytest.raises(ConfigError, match="act_bits = 4"):
        distill_from_config(config)
    config = tiny_config(tmp_path, student=SPEQ["student"], distill=[{"name": "speq"}])
    with pytest.raises(ConfigError, match='kind = "speq"'):
        distill_from_config(config)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_an_activation_quantized_student_exports_with_its_activation_quantization(tmp_path):
    from datafree.ship.deploy import deploy_run, student_of_run

    config = tiny_config(tmp_path, student={"wrap": [{"name": "quantize", "params": {"bits": 4, "act_bits": 4}}]},
                         train={"steps": 2, "eval_every": 2})  # fmt: skip
    save_random_teacher(config)
    distill_from_config(config)
    net, _, spec, layers = student_of_run(tmp_path / "run")
    assert {v["act_bits"] for v in layers.values()} == {4}
    trained = build.build_net("lenet5_half", spec)
    create_student_wrapper("quantize", bits=4, act_bits=4).wrap(trained)
    from datafree.io.checkpoint import load_weights

    load_weights(trained, tmp_path / "run" / "student_last.safetensors", what="student")
    x = torch.randn(8, 1, 32, 32)
    torch.testing.assert_close(net(x), trained.eval()(x), rtol=0, atol=1e-5)  # folded weights + input quantizers
    report = deploy_run(tmp_path / "run", threads=1)
    for f in report["files"]:
        assert f["accuracy_onnxruntime"] == f["accuracy_pytorch"], f
        assert f["max_abs_logit_diff"] <= 1e-3, f
