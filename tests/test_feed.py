"""FEED: an ensemble of teachers of different architectures and the per-member feature transforms of the student."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from datafree import build
from datafree.io.checkpoint import CheckpointError, save_weights
from datafree.config import ConfigError
from datafree.distill import create_loss
from datafree.nets.feature_stats import BETWEEN_IMAGES, record_teacher_stats, save_reference
from datafree.nets.features import NetOutput
from datafree.pipeline import distill_from_config
from tests.conftest import crash_then_resume, tiny_config


def test_feed_loss_by_hand_with_identity_transforms():
    loss = create_loss("feed", student_layers=["s"], teacher_layers=["m0/t", "m1/t"])
    loss.setup({"s": (2, 1, 1)}, {"m0/t": (2, 1, 1), "m1/t": (2, 1, 1)})
    loss.transforms = nn.ModuleList([nn.Identity(), nn.Identity()])  # isolate the distance from the transforms
    student = NetOutput(torch.zeros(1, 3), {"s": torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)})
    teacher = NetOutput(torch.zeros(1, 3), {"m0/t": torch.tensor([0.0, 5.0]).view(1, 2, 1, 1),
                                           "m1/t": torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)})  # fmt: skip
    # unit(s) = (0.6, 0.8); member 0: |0.6 - 0| + |0.8 - 1| = 0.8; member 1: |0.6 - 1| + |0.8 - 0| = 1.2; mean 1.0
    assert loss(student, teacher).item() == pytest.approx(1.0)


def test_feed_builds_one_nonlinear_transform_per_member_of_the_teachers_width():
    loss = create_loss("feed", student_layers=["s"], teacher_layers=["m0/a", "m1/b"])
    loss.setup({"s": (4, 8, 8)}, {"m0/a": (6, 8, 8), "m1/b": (10, 4, 4)})
    assert [t[0].out_channels for t in loss.transforms] == [6, 10]
    assert any(isinstance(layer, nn.ReLU) for layer in loss.transforms[0])  # non-linear, not a regressor
    with pytest.raises(ValueError, match="ONE layer"):
        create_loss("feed", student_layers=["a", "b"], teacher_layers=["m0/a"])
    with pytest.raises(ValueError, match="conv maps"):
        create_loss("feed", student_layers=["s"], teacher_layers=["m0/fc"]).setup({"s": (4, 8, 8)}, {"m0/fc": (10,)})


def ensemble_config(tmp_path, **sections):
    """Two random members of different families: a LeNet-5 (recorded statistics) and a BatchNorm VGG."""
    base = tiny_config(tmp_path)
    spec = build.image_spec(base)
    members = []
    for i, arch in enumerate(("lenet5", "vgg_bn_small")):
        torch.manual_seed(i)
        path = tmp_path / f"member{i}" / "teacher.safetensors"
        save_weights(build.build_net(arch, spec), path, {"arch": arch, "num_classes": spec.num_classes})
        members.append({"arch": arch, "checkpoint": str(path)})
    return tiny_config(tmp_path, teacher={"kind": "ensemble", "members": members}, **sections), members


def test_ensemble_of_two_architectures_averages_logits_and_namespaces_features(tmp_path):
    config, _ = ensemble_config(tmp_path)
    spec = build.image_spec(config)
    source = build.build_teacher(config, spec)
    source.tap(["m0/conv1", "m1/features.1"])
    x = torch.randn(3, 1, 32, 32)
    out = source(x)
    nets = [m.net for m in source.members()]
    with torch.no_grad():
        torch.testing.assert_close(out.logits, (nets[0](x) + nets[1](x)) / 2)
        torch.testing.assert_close(out.features["m1/features.1"], nets[1].features[:2](x))
    assert out.features["m0/conv1"].shape[1:] == (6, 28, 28)


@pytest.mark.slow
def test_parallel_feed_trains_its_transforms_and_keeps_them_out_of_the_student(tmp_path):
    config, _ = ensemble_config(tmp_path, distill=[{"name": "kd"}, {"name": "feed", "weight": 1.0}],
                                train={"steps": 3, "eval_every": 3})  # fmt: skip
    trainer = build.trainer_from_config(config)
    feed = trainer.parts.student.losses[1]
    assert feed.teacher_layers == ["m0/relu3", "m1/features.6"] and feed.student_layers == ["relu3"]
    before = [p.detach().clone() for p in feed.transforms.parameters()]
    trainer.train_step(0)
    after = list(feed.transforms.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # every transform weight got a gradient step
    build.reset_accelerate()
    distill_from_config(config)
    out = config.train.output_dir
    with_losses, bare = load_file(f"{out}/student_last_with_losses.safetensors"), load_file(f"{out}/student_last.safetensors")
    transform_keys = [k for k in with_losses if "transforms" in k]
    assert len(transform_keys) > 8 and not any("transforms" in k for k in bare)  # deployable student: no transforms
    lines = [json.loads(l) for l in open(f"{out}/metrics.jsonl")]
    assert all(l["s_feed"] > 0 for l in lines)


def test_each_member_reads_its_own_statistics_and_a_stats_key_points_elsewhere(tmp_path):
    config, members = ensemble_config(tmp_path, synthesis={"feature_stats": 1.0})
    spec = build.image_spec(config)
    lenet = build.build_net("lenet5", spec)
    pooled, _ = record_teacher_stats(lenet, [(torch.randn(8, 1, 32, 32), torch.arange(8) % 10)], num_classes=10)
    own = tmp_path / "elsewhere.stats.safetensors"
    save_reference(pooled, own)
    with pytest.raises(ConfigError, match="member0/teacher.stats.safetensors does not exist"):
        build.assemble(config, build.build_teacher(config, spec), build.build_net("lenet5_half", spec), spec,
                       build.make_accelerator(config))  # fmt: skip
    members[0]["stats"] = str(own)
    config.teacher.members = members
    parts = build.assemble(config, build.build_teacher(config, spec), build.build_net("lenet5_half", spec), spec,
                           build.make_accelerator(config))  # fmt: skip
    taps = parts.objective.teacher_taps
    layers = {f"m0/{t}" for t in pooled if t not in ("logits", "penultimate") and not t.endswith(BETWEEN_IMAGES)}
    assert layers <= set(taps) and "m0/logits" not in taps and "m1/features.0.1:input" in taps  # LeNet file, VGG's BN


def test_ensemble_errors_name_the_member(tmp_path):
    config, members = ensemble_config(tmp_path)
    spec = build.image_spec(config)
    members[1]["arch"] = "resnet8"  # the checkpoint holds a vgg_bn_small
    config.teacher.members = members
    with pytest.raises(CheckpointError, match=r"teacher member 1 \(resnet8\)"):
        build.build_teacher(config, spec)
    config.teacher.members = [members[0], {"arch": "lenet5", "checkpoint": str(tmp_path / "nope.safetensors")}]
    with pytest.raises(CheckpointError, match="nope.safetensors does not exist"):
        build.build_teacher(config, spec)
    five = tmp_path / "five.safetensors"
    save_weights(build.build_net("lenet5", dataclasses.replace(spec, num_classes=2)), five, {"arch": "lenet5", "num_classes": 2})
    config.teacher.members = [members[0], {"arch": "lenet5", "checkpoint": str(five)}]
    with pytest.raises(ConfigError, match="has 2 classes but the data has 10"):
        build.build_teacher(config, spec)
    config.teacher.members = [members[0], {"arch": "lenet5", "checkpoint": members[0]["checkpoint"], "epochs": 3}]
    with pytest.raises(ConfigError, match="optional keys: stats, feature_layer, seed"):
        build.build_teacher(config, spec)


@pytest.mark.e2e
def test_sequential_feed_runs_a_stage_per_teacher_and_carries_the_student_over(tmp_path):
    import tomllib

    import datafree.cli.feed as sfeed

    config, members = ensemble_config(tmp_path)
    recipe = tmp_path / "ensemble.toml"
    lines = ['name = "sfeed"', 'preset = "dafl"', "[teacher]", 'kind = "ensemble"',
             "members = [" + ", ".join(f'{{arch = "{m["arch"]}", checkpoint = "{m["checkpoint"]}"}}' for m in members) + "]",
             "[student]", "lr = 1e-12", "[train]", "steps = 2", "batch_size = 8", "eval_every = 2"]  # fmt: skip
    recipe.write_text("\n".join(lines) + "\n")
    tomllib.loads(recipe.read_text())  # the test's own recipe is valid TOML
    root = tmp_path / "sfeed"
    assert sfeed.main(["--config", str(recipe), "--smoke", "--output-root", str(root),
                       "--distill", '[{"name": "kd"}, {"name": "feed"}]']) == 0  # fmt: skip
    stages = json.loads((root / "stages.json").read_text())
    assert [s["teacher"]["arch"] for s in stages] == ["lenet5", "vgg_bn_small"]
    assert json.loads((root / "stage_1" / "config.json").read_text())["teacher"]["arch"] == "vgg_bn_small"
    first, second = (load_file(str(root / f"stage_{i}" / "student_last.safetensors")) for i in (0, 1))
    # lr 1e-12: a stage barely moves the student, so stage 1 ends where stage 0 left it (a fresh student would not)
    assert all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)


@pytest.mark.e2e
def test_train_teacher_trains_every_member_with_its_own_seed(tmp_path, capsys):
    import train_teacher

    members = [{"arch": "lenet5", "checkpoint": str(tmp_path / f"t{i}" / "teacher.safetensors")} for i in range(2)]
    members.append({"arch": "vgg_bn_small", "checkpoint": str(tmp_path / "t2" / "teacher.safetensors"), "seed": 7})
    recipe = tmp_path / "members.toml"
    listed = ", ".join("{" + ", ".join(f'{k} = {json.dumps(v)}' for k, v in m.items()) + "}" for m in members)
    recipe.write_text(f'preset = "dafl"\n[data]\nname = "fake"\nlike = "fashion-mnist"\nfake_size = 64\n'
                      f'root = "{tmp_path / "data"}"\n[teacher]\nkind = "ensemble"\nmembers = [{listed}]\n'
                      f'[teacher_training]\nepochs = 1\nbatch_size = 16\n')  # fmt: skip
    assert train_teacher.main(["--config", str(recipe)]) == 0
    weights = [load_file(m["checkpoint"]) for m in members]
    assert not torch.equal(weights[0]["conv1.weight"], weights[1]["conv1.weight"])  # seeds 0 and 1 differ
    for m in members:
        path = m["checkpoint"].replace("teacher.safetensors", "teacher.stats.safetensors")
        assert load_file(path)  # statistics recorded beside every member
    assert "(seed 7)" in capsys.readouterr().out


def test_generator_objective_over_an_ensemble_is_the_documented_formula(tmp_path):
    """L_G = CE(z_bar, argmax z_bar) + 0.1 * (-(1/M) sum_m mean|f_m|) + 5 * sum_k p_k log10 p_k, z_bar = mean_m z_m."""
    import math

    import torch.nn.functional as F

    from datafree.synthesis import SynthBatch

    config, _ = ensemble_config(tmp_path)
    spec = build.image_spec(config)
    source = build.build_teacher(config, spec)
    objective = build.build_synthesis(config, source, spec)
    source.tap(objective.teacher_taps)
    x = torch.randn(6, 1, 32, 32)
    total, values = objective(SynthBatch(x, source(x)))
    nets = [m.net for m in source.members()]
    with torch.no_grad():
        z = (nets[0](x) + nets[1](x)) / 2
        n = nets[0]
        f0 = torch.relu(n.conv3(n.pool2(torch.relu(n.conv2(n.pool1(torch.relu(n.conv1(x)))))))).flatten(1)  # "flatten"
        f1 = nets[1].head[:3](nets[1].features(x))  # the VGG's hidden fc after its ReLU
    p = F.softmax(z, dim=1).mean(dim=0)
    expected = {"g_onehot": F.cross_entropy(z, z.argmax(dim=1)).item(),
                "g_activation": -(f0.abs().mean() + f1.abs().mean()).item() / 2,
                "g_entropy": (p * torch.log(p) / math.log(10)).sum().item()}  # fmt: skip
    for name, value in expected.items():
        assert values[name].item() == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert total.item() == pytest.approx(expected["g_onehot"] + 0.1 * expected["g_activation"] + 5 * expected["g_entropy"],
                                         rel=1e-5)  # fmt: skip


@pytest.mark.slow
def test_feed_transforms_are_checkpointed_and_a_resumed_run_ends_identical(tmp_path, monkeypatch):
    outs = []
    for name, crash in (("straight", False), ("resumed", True)):
        config, _ = ensemble_config(tmp_path / name, distill=[{"name": "kd"}, {"name": "feed"}])
        if crash:
            crash_then_resume(config, monkeypatch)
        else:
            distill_from_config(config)
        build.reset_accelerate()
        outs.append(load_file(f"{config.train.output_dir}/student_last_with_losses.safetensors"))
    assert any("transforms" in k for k in outs[0])
    for key in outs[0]:
        torch.testing.assert_close(outs[0][key], outs[1][key], rtol=0, atol=0, msg=key)
