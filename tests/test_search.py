"""The student search: channel gates (datafree/wrappers/gates.py), FLOP counting, proximal steps, early stop,
export of the found architecture, resume, residual ties, errors, and runs/search_student.py end to end."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from datafree.config import ConfigError
from datafree.config.spellings import translate_batch_keys
from datafree.nets.flops import layer_costs
from datafree.models import create_model, model_from_spec
from datafree.pipeline import distill_from_config
from datafree.nets.spec import ImageSpec
from datafree.wrappers import create_student_wrapper
from datafree.wrappers.gates import apg_step, soft_threshold
from tests.conftest import assert_same_weights, crash_then_resume, save_random_teacher, tiny_config


class Tiny(nn.Module):
    """conv1 1->2, conv2 2->3 (3x3, padding 1) on 4x4 images, global average pool, fc 3->2."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(1, 2, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()
        self.pool, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))))


def gates(net: nn.Module, shape=(1, 4, 4), **params):
    wrapper = create_student_wrapper("channel_gates", **params)
    wrapper.configure(ImageSpec(shape[0], shape[1], 10, (0.5,) * shape[0], (0.5,) * shape[0]))
    return wrapper, wrapper.wrap(net)


def test_flop_weights_of_a_tiny_conv_net_by_hand():
    # MACs: conv1 = 2 ch * 16 px * (1 * 9) = 288; conv2 = 3 * 16 * (2 * 9) = 864; fc = 3 * 2 = 6
    costs = layer_costs(Tiny(), torch.zeros(1, 1, 4, 4))
    assert {k: c.macs for k, c in costs.items()} == {"conv1": 288, "conv2": 864, "fc": 6}
    wrapper, _ = gates(Tiny())
    assert [s.layer for s in wrapper.sites] == ["conv1", "conv2"]  # fc gives the logits: not gated
    # closing a conv1 channel removes 288/2 of conv1 and 864/2 of conv2 = 576; a conv2 channel 864/3 + 6/3 = 290
    mean = (2 * 576 + 3 * 290) / 5
    torch.testing.assert_close(wrapper.weights[0], torch.full((2,), 576 / mean))
    torch.testing.assert_close(wrapper.weights[1], torch.full((3,), 290 / mean))
    assert float(wrapper.open_flops()) == 288 + 864 + 6
    assert float(wrapper.open_flops({"conv1": 1, "conv2": 2})) == 144 + 864 / 2 / 3 * 2 + 4  # 144 + 288 + 4
    unweighted, _ = gates(Tiny(), flop_weighted=False)
    assert all(torch.equal(w, torch.ones_like(w)) for w in unweighted.weights)
    assert create_model("lenet5", 10, 1).model_spec["arch"] == "lenet5"
    assert sum(c.macs for c in layer_costs(create_model("lenet5_half", 10, 1), torch.zeros(1, 1, 32, 32)).values()) == 133_740


def test_soft_threshold_step_by_hand():
    gate = torch.tensor([1.0, 0.05, -0.3, 0.02])
    grad = torch.tensor([0.5, 0.0, 0.0, -1.0])
    threshold = torch.tensor([0.2, 1.0, 1.0, 0.5])  # lambda * w_c
    # z = g - 0.1 grad = [0.95, 0.05, -0.3, 0.12]; thresholds 0.1 * [0.2, 1, 1, 0.5] = [0.02, 0.1, 0.1, 0.05]
    new, x, v = apg_step(gate, grad, torch.zeros(4), lr=0.1, threshold=threshold, momentum=0.0)
    torch.testing.assert_close(x, torch.tensor([0.93, 0.0, -0.2, 0.07]))
    assert x[1].item() == 0.0 and torch.equal(new, x)  # below its threshold: exactly zero; no momentum: g = x'
    assert soft_threshold(torch.tensor([-0.05]), 0.1).item() == 0.0
    # with momentum: g = x' + mu (x' - g_old); a gate held closed for two updates is exactly 0 in the forward too
    new, x, v = apg_step(gate, grad, torch.zeros(4), lr=0.1, threshold=threshold, momentum=0.5)
    torch.testing.assert_close(new, x + 0.5 * (x - gate))
    assert new[1].item() != 0.0 and x[1].item() == 0.0
    new, x, v = apg_step(new, torch.zeros(4), v, lr=0.1, threshold=threshold, momentum=0.5)
    assert new[1].item() == 0.0 and v[1].item() == 0.0


def test_step_bound_restart_and_non_finite_guard_by_hand():
    # the gradient step is clamped per gate: z = g - clamp(eta * grad, -0.1, 0.1)
    new, x, _ = apg_step(torch.tensor([1.0, 1.0]), torch.tensor([500.0, -3.0]), torch.zeros(2), lr=0.01,
                         threshold=torch.zeros(2), momentum=0.0, max_step=0.1)  # fmt: skip
    torch.testing.assert_close(x, torch.tensor([0.9, 1.03]))
    # adaptive restart: (y - x'_new) . (x'_new - x'_old) > 0 (momentum overshot) -> v = 0 and g = x'_new
    for restart, expected in ((True, 1.12), (False, 1.13)):
        wrapper, net = gates(Tiny(), l1=0.0, gate_lr=0.1, momentum=0.5, restart=restart)
        gate = wrapper.gates(net)[0]  # the other gates get no gradient and stay at 1 (l1 = 0)
        gate.grad = torch.full((2,), -1.0)  # z = x' = 1.1, v = 0.1, g = 1.15; (1 - 1.1)(1.1 - 1) < 0: no restart
        wrapper.after_step(net, 0.0)
        torch.testing.assert_close(gate.detach(), torch.full((2,), 1.15))
        assert wrapper.restarts == 0
        gate.grad = torch.full((2,), 0.3)  # z = x' = 1.12: (1.15 - 1.12)(1.12 - 1.1) > 0
        wrapper.after_step(net, 0.0)  # without restart: g = 1.12 + 0.5 (1.12 - 1.15 + 0.5 * 0.1) = 1.13
        torch.testing.assert_close(gate.detach(), torch.full((2,), expected))
        assert wrapper.restarts == int(restart) and bool((wrapper.v[0] == 0).all()) == restart
    # a non-finite gradient leaves every gate (and the momentum) as it was
    wrapper, net = gates(Tiny(), l1=0.1)
    first, second = wrapper.gates(net)
    first.grad, second.grad = torch.tensor([float("nan"), 0.0]), torch.zeros(3)
    wrapper.after_step(net, 0.0)
    assert wrapper.skipped_steps == 1 and torch.equal(first.detach(), torch.ones(2)) and first.grad is None


def test_l1_grows_while_the_search_stalls_above_the_target():
    # l1 so small that no gate closes: the open FLOPs never drop, so lambda doubles every 3 updates
    wrapper, net = gates(Tiny(), l1=1e-6, target_flops=300, patience=3, l1_growth=2.0)
    lambdas = []
    for _ in range(7):
        wrapper.after_step(net, 0.0)
        lambdas.append(wrapper.l1_now)
    # update 1 sets the best (1,158 FLOPs, the teacher's); updates 2, 3, 4 stall -> x2; 5, 6, 7 -> x2 again
    assert lambdas == pytest.approx([1e-6, 1e-6, 1e-6, 2e-6, 2e-6, 2e-6, 4e-6])
    fixed, net = gates(Tiny(), l1=1e-6, target_flops=300, patience=0)
    for _ in range(7):
        fixed.after_step(net, 0.0)
    assert fixed.l1_now == 1e-6  # patience 0: the paper's fixed lambda
    no_target, net = gates(Tiny(), l1=1e-6, patience=3)
    for _ in range(7):
        no_target.after_step(net, 0.0)
    assert no_target.l1_now == 1e-6  # nothing to reach: lambda stays


def test_l1_only_updates_close_gates_and_the_flops_counter_drops():
    torch.manual_seed(0)
    # no momentum: L1's proximal steps alone shrink every |gate| each update, so the open FLOPs never rise
    wrapper, net = gates(create_model("lenet5", 10, 1), shape=(1, 32, 32), l1=1.0, gate_lr=0.05, momentum=0.0)
    flops, penalties = [float(wrapper.open_flops())], [float(wrapper.penalty(net, 0.0))]
    for _ in range(40):  # no loss gradient: only the L1 term acts (gate.grad is None)
        wrapper.after_step(net, 0.0)
        flops.append(float(wrapper.open_flops()))
        penalties.append(float(wrapper.penalty(net, 0.0)))
    assert flops[0] == 416_520 and flops[-1] < flops[0]
    assert all(b <= a for a, b in zip(flops, flops[1:]))
    assert penalties[-1] < penalties[0]
    assert sum(int((x == 0).sum()) for x in wrapper.x) > 0
    # FLOP weighting: conv2 channels (240,000 / 16 + 48,000 / 16 each) close before fc1's (10,080 / 84 + 840 / 84)
    assert (wrapper.x[1] == 0).float().mean() > (wrapper.x[3] == 0).float().mean()  # strictly: some conv2 closed first


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One small search on the tiny recipe: LeNet-5 gated, target 60% of its FLOPs, at most 40 steps."""
    out = tmp_path_factory.mktemp("search")
    config = tiny_config(out, student={"arch": "lenet5", "wrap": [{"name": "channel_gates", "params": {
        "target_fraction": 0.6, "l1": 0.3, "gate_lr": 0.02}}]},
        train={"steps": 40, "eval_every": 20, "checkpoint_every": 20, "sample_every": 40})  # fmt: skip
    save_random_teacher(config)
    results = distill_from_config(config)
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    return config, results, out / "run"


@pytest.mark.slow
def test_early_stop_fires_at_the_target(searched):
    config, results, run = searched
    lines = [json.loads(line) for line in open(run / "metrics.jsonl")]
    target = 0.6 * 416_520
    assert results["steps"] < 40 and lines[-1]["step"] == results["steps"]
    assert lines[-1]["open_flops"] <= target < lines[-2]["open_flops"]  # stopped at the first step under the target
    info = json.loads((run / "architecture.json").read_text())
    assert info["flops"] == lines[-1]["open_flops"] and info["target_flops"] == pytest.approx(target)


def test_exported_architecture_rebuilds_by_name_and_reproduces_the_gated_network(searched):
    config, _, run = searched
    info = json.loads((run / "architecture.json").read_text())
    gated_state = load_file(str(run / "student_last.safetensors"))
    expected = {layer: max(1, int((gated_state[f"{layer}.gate"] != 0).sum())) for layer in ("conv1", "conv2", "conv3", "fc1")}
    assert info["arch"] == "lenet5" and info["kwargs"] == {"widths": [expected[k] for k in ("conv1", "conv2", "conv3", "fc1")]}
    assert any(v < w for v, w in zip(info["kwargs"]["widths"], (6, 16, 120, 84)))
    found = model_from_spec(info)
    found.load_state_dict(load_file(str(run / "student_found.safetensors")))  # strict: every shape fits
    _, gated = gates(create_model("lenet5", 10, 1), shape=(1, 32, 32))
    gated.load_state_dict(gated_state)
    x = torch.randn(8, 1, 32, 32)
    torch.testing.assert_close(found.eval()(x), gated.eval()(x), rtol=1e-5, atol=1e-5)
    assert info["layers"]["conv2"]["found_width"] == expected["conv2"]


@pytest.mark.slow
def test_resume_mid_search_reproduces_the_uninterrupted_search(tmp_path, monkeypatch):
    search = {"arch": "lenet5", "wrap": [{"name": "channel_gates", "params": {  # a target it cannot reach: lambda grows
        "l1": 0.3, "gate_lr": 0.02, "target_fraction": 0.06, "patience": 1}}]}  # fmt: skip
    straight = tiny_config(tmp_path / "a", student=search)
    save_random_teacher(straight)
    distill_from_config(straight)
    resumed = tiny_config(tmp_path / "b", student=search)
    save_random_teacher(resumed)
    crash_then_resume(resumed, monkeypatch)
    assert_same_weights(straight.train.output_dir, resumed.train.output_dir,
                        ("student_last.safetensors", "generator.safetensors", "student_found.safetensors"))  # fmt: skip
    state = load_file(f"{resumed.train.output_dir}/checkpoints/step_0000006/train_state_0.safetensors")
    assert any("/v/" in key for key in state)  # the momentum is part of the checkpoint
    lines = [json.loads(line) for line in open(f"{resumed.train.output_dir}/metrics.jsonl")]
    assert [l["gate_l1"] > 0.3 for l in lines[:3]] == [False, True, True]  # lambda grew before the crash (step 3)


def test_residual_ties_are_respected():
    torch.manual_seed(0)
    wrapper, net = gates(create_model("resnet8", 10, 1), shape=(1, 28, 28))
    assert [s.layer for s in wrapper.sites] == ["stage1.0.conv.0.0", "stage2.0.conv.0.0", "stage3.0.conv.0.0"]
    for tied in ("stem.0", "stage1.0.conv.1", "stage2.0.conv.1", "stage2.0.shortcut.0", "stage3.0.shortcut.0"):
        assert "tied" in wrapper.skipped[tied]  # channels added together are never gated apart
    for site, x in zip(wrapper.sites, wrapper.x):
        x[torch.arange(site.channels) % 3 == 0] = 0
    net.eval()
    pruned, info = wrapper.found_student(net)
    assert info["kwargs"] == {"inner": [10, 21, 42]}  # the residual widths (16, 32, 64) stay
    assert [info["layers"][n]["found_width"] for n in ("stem.0", "stage2.0.conv.1", "stage3.0.shortcut.0")] == [16, 32, 64]
    x = torch.randn(2, 1, 28, 28)
    rebuilt = model_from_spec(info)
    rebuilt.load_state_dict(pruned.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x), net(x), rtol=1e-5, atol=1e-5)


def test_widths_kwargs_keep_default_networks_bit_for_bit():
    for name, kwargs in (("resnet18", {"inner": [64, 64, 128, 128, 256, 256, 512, 512]}),
                         ("lenet5", {"widths": [6, 16, 120, 84]}), ("resnet8", {"inner": [16, 32, 64]})):  # fmt: skip
        torch.manual_seed(0)
        plain = create_model(name, 10, 1)
        torch.manual_seed(0)
        explicit = create_model(name, 10, 1, **kwargs)
        for key, value in plain.state_dict().items():
            assert torch.equal(value, explicit.state_dict()[key]), (name, key)


def test_clear_errors_for_unreachable_targets_and_ungateable_layers():
    with pytest.raises(ConfigError, match=r"target_flops = 500,000 is unreachable: the teacher has 416,520 FLOPs"):
        gates(create_model("lenet5", 10, 1), shape=(1, 32, 32), target_flops=5e5)
    with pytest.raises(ConfigError, match="target_flops = 0 is unreachable"):
        gates(create_model("lenet5", 10, 1), shape=(1, 32, 32), target_flops=0)
    with pytest.raises(ConfigError, match=r"cannot gate \{'fc': 'Linear'\}.*logits.*Gateable layers: \['conv1', 'conv2'\]"):
        gates(Tiny(), layers=["fc"])
    depthwise = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten(), nn.LazyLinear(3))
    depthwise(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ConfigError, match=r"nothing to gate.*grouped conv"):
        gates(depthwise, shape=(2, 4, 4))


@pytest.mark.slow
def test_search_student_on_the_cifar_resnet34_teacher_with_fake_data(tmp_path):
    """The CIFAR ResNet-34 teacher (random weights) on fake CIFAR-10: search, export, distill the found student."""
    from datafree.cli.search import SearchSettings, run
    from runs.benchmark import recipe_path, smoke_config

    from datafree.config import load_toml

    config = smoke_config(load_toml(recipe_path("cifar10")))
    config.data.root, config.data.fake_size = str(tmp_path / "data"), 16
    config.teacher.checkpoint = str(tmp_path / "teacher.safetensors")
    t = config.train
    t.steps, t.batch_size, t.student_steps = 1, 2, 1
    config.batches = translate_batch_keys(config.batches, {"fresh_batches": False, "replay": 0})
    t.eval_every = t.log_every = t.sample_every = t.checkpoint_every = 1
    save_random_teacher(config)
    summary = run(config, SearchSettings(steps=2, l1=50.0, gate_lr=0.05, target_fraction=0.9), tmp_path / "out")
    info = json.loads((tmp_path / "out" / "search" / "architecture.json").read_text())
    assert info["arch"] == "resnet34" and len(info["kwargs"]["inner"]) == 16
    assert info["flops"] < info["teacher_flops"] and summary["search"]["flops"] == info["flops"]
    assert (tmp_path / "out" / "found_widths.png").stat().st_size > 0
    assert (tmp_path / "out" / "distill" / "report.md").exists() and summary["distill"]["params"] < 21_300_000
    # the distilled run names its student by registry name + searched widths: deploy and evaluate rebuild it
    from datafree.ship.deploy import student_of_run
    from datafree.nets.flops import parameter_count

    rebuilt, run_config, _, _ = student_of_run(tmp_path / "out" / "distill")
    assert run_config.student.arch == "resnet34" and run_config.student.kwargs == info["kwargs"]
    assert parameter_count(rebuilt) == summary["distill"]["params"]


def test_search_settings_defaults_are_the_wrappers():
    """runs/search_student.py's --search.* options repeat the wrapper's params: their defaults must not drift."""
    import inspect

    from datafree.cli.search import SearchSettings
    from datafree.wrappers.gates import ChannelGates

    wrapper = {k: p.default for k, p in inspect.signature(ChannelGates.__init__).parameters.items() if k != "self"}
    settings = vars(SearchSettings())
    shared = set(wrapper) & set(settings)
    assert {"l1", "gate_lr", "momentum", "flop_weighted", "max_step", "restart", "l1_growth", "patience"} <= shared
    assert {k: settings[k] for k in shared} == {k: wrapper[k] for k in shared}
