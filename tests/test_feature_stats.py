"""DeepInversion's feature-statistics prior: the loss by hand, recording, BN teachers, sidecar files, errors."""

from __future__ import annotations

import math

import dataclasses

import pytest
import torch
from torch import nn

from datafree.config import ConfigError, set_synthesis_value
from datafree.nets.feature_stats import (batchnorm_reference, channel_moments, load_reference, record_feature_stats,
                                    save_reference, stats_path)  # fmt: skip
from datafree.synthesis import feature_stats_loss
from tests.conftest import save_random_teacher, tiny_config


def test_loss_matches_hand_computation():
    # one layer, 2 channels, batch of 2 with 1x2 pixels: channel 0 = [1, 3, 5, 7], channel 1 = [0, 0, 2, 2]
    features = {"conv": torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]], [[[5.0, 7.0]], [[2.0, 2.0]]]])}
    # batch mean (4, 1), biased var (5, 1); reference mean (1, 1), var (5, 0)
    reference = {"conv": (torch.tensor([1.0, 1.0]), torch.tensor([5.0, 0.0]))}
    expected = math.hypot(3.0, 0.0) + math.hypot(0.0, 1.0)
    assert feature_stats_loss(features, reference).item() == pytest.approx(expected)
    # a second layer adds its own term
    features["fc"] = torch.tensor([[2.0], [4.0]])  # mean 3, var 1
    reference["fc"] = (torch.tensor([0.0]), torch.tensor([1.0]))
    assert feature_stats_loss(features, reference).item() == pytest.approx(expected + 3.0)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))


def test_recorded_stats_equal_the_stats_of_all_images_at_once_and_give_zero_loss_on_them():
    net, images = _net(), torch.randn(37, 1, 8, 8)
    reference = record_feature_stats(net, images.split(10))  # uneven batches: 10, 10, 10, 7
    assert list(reference) == ["0", "2"]  # every conv output by default
    features = {"0": net[0](images), "2": net[2](net[1](net[0](images)))}
    for tap, (mean, var) in reference.items():
        want_mean, want_var = channel_moments(features[tap])
        torch.testing.assert_close(mean, want_mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(var, want_var, atol=1e-5, rtol=1e-5)
    assert feature_stats_loss(features, reference).item() < 1e-4
    assert feature_stats_loss({k: v + 1 for k, v in features.items()}, reference).item() > 1.0


def test_batchnorm_teacher_supplies_its_running_stats_as_input_statistics():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
    net.train()
    net(torch.randn(8, 1, 6, 6) * 3 + 2)
    reference = batchnorm_reference(net)
    assert list(reference) == ["1:input"]
    torch.testing.assert_close(reference["1:input"][0], net[1].running_mean)
    torch.testing.assert_close(reference["1:input"][1], net[1].running_var)


def test_reference_file_round_trips_beside_the_teacher(tmp_path):
    reference = record_feature_stats(_net(), [torch.randn(5, 1, 8, 8)])
    path = stats_path(tmp_path / "teacher.safetensors")
    assert path.name == "teacher.stats.safetensors"
    save_reference(reference, path)
    loaded = load_reference(path)
    assert list(loaded) == list(reference)
    for tap in reference:
        assert all(torch.equal(a, b) for a, b in zip(loaded[tap], reference[tap]))


@pytest.mark.slow
def test_missing_statistics_or_wrong_channel_count_fail_before_training(tmp_path):
    from datafree import build
    from datafree.pipeline import distill_from_config

    config = tiny_config(tmp_path, synthesis={"feature_stats": 1.0})
    save_random_teacher(config)
    with pytest.raises(ConfigError, match="python -m datafree.cli.feature_stats"):
        distill_from_config(config)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    from datafree.cli.feature_stats import record_for_recipe  # the fix the message names (its CLI's body)

    assert record_for_recipe(config) == stats_path(config.teacher_checkpoint)
    assert distill_from_config(config)["steps"] == config.train.steps

    bad = {"conv1": (torch.zeros(5), torch.ones(5))}  # LeNet-5's conv1 has 6 channels
    with pytest.raises(ConfigError, match="6 channels"):
        stats_term(config, given=bad)
    set_synthesis_value(config, "feature_stats.layers", ["conv2"])
    assert list(stats_term(config, given={**bad, "conv2": (torch.zeros(16), torch.ones(16))}).reference) == ["conv2"]
    set_synthesis_value(config, "feature_stats.layers", ["conv3"])
    with pytest.raises(ConfigError, match=r"\['conv3'\] are not in"):
        stats_term(config, given=bad)
    set_synthesis_value(config, "feature_stats.layers", [])
    with pytest.raises(ConfigError, match="no layer named 'conv9'"):
        stats_term(config, given={"conv9": (torch.zeros(6), torch.ones(6))})


@pytest.mark.slow
def test_train_teacher_keeps_route_and_statistics_and_the_prior_trains_the_generator(tmp_path):
    import json

    from datafree.data import load_tensors
    from datafree.pipeline import distill_from_config
    from datafree.supervised import train_teacher

    config = tiny_config(tmp_path, teacher_training={"epochs": 2, "route_every": 1}, synthesis={"feature_stats": 1.0},
                         train={"steps": 3, "eval_every": 3})  # fmt: skip
    result = train_teacher(config)
    folder = tmp_path
    assert (folder / "route" / "epoch_001.safetensors").exists() and (folder / "route" / "epoch_002.safetensors").exists()
    saved = json.loads((folder / "teacher.json").read_text())
    assert saved["epochs"] == 2 and result["teacher_acc"] == saved["history"][-1]["test_acc"]
    reference = load_reference(stats_path(config.teacher_checkpoint))
    # LeNet-5's declared stats_taps (and each one's spread between images), its answers and its penultimate
    # features (its declared feature_layer: 120)
    assert list(reference) == ["conv1", "conv1@images", "conv2", "conv2@images", "conv3", "conv3@images", "logits",
                               "penultimate"]  # fmt: skip
    assert tuple(load_reference(stats_path(config.teacher_checkpoint), per_class=True)["penultimate"][0].shape) == (10, 120)
    assert tuple(load_reference(stats_path(config.teacher_checkpoint), per_class=True)["conv1"][0].shape) == (10, 6)

    from datafree import build

    spec = build.image_spec(config)
    net = build.load_teacher_net(config, spec)
    images = load_tensors("fake", root=config.data.root, like="fashion-mnist", fake_size=256).tensors[0]
    again = record_feature_stats(net, images.split(100))
    for tap in ("conv1", "conv2", "conv3"):
        torch.testing.assert_close(reference[tap][0], again[tap][0], atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # the recorded answers: the mean of the teacher's logits over the training images
        torch.testing.assert_close(reference["logits"][0], net.eval()(images).mean(0), atol=1e-4, rtol=1e-4)

    distill_from_config(config)
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert all(l["g_feature_stats"] > 0 for l in lines)

    assert_prior_trains_every_generator_parameter(config, net, "g_feature_stats")


def stats_term(config, given=None, name: str = "feature_stats"):
    """The recipe's statistics term set up against its teacher (what build does before step 0)."""
    from datafree import build

    spec = build.image_spec(config)
    only = dataclasses.replace(config, synthesis=[t for t in config.synthesis if t.name == name])
    objective = build.build_synthesis(only, build.build_teacher(config, spec), spec, given={name: given})
    return objective.terms[0]


def assert_prior_trains_every_generator_parameter(config, teacher_net, term: str) -> None:
    """The prior reaches the generator through the teacher's features (not computed on detached tensors)."""
    from datafree import build
    from datafree.synthesis import SynthBatch

    trainer = build.trainer_from_config(config)
    images, teacher_out = trainer.synthesize(0)
    prior = next(t for t in trainer.objective.terms if t.log_name == term)
    prior(SynthBatch(images, teacher_out)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.generator.parameters() if p.requires_grad)


def test_ensure_for_recipe_records_once_and_only_when_needed(tmp_path):
    from datafree.supervised import ensure_for_recipe

    off = tiny_config(tmp_path / "off")
    save_random_teacher(off)
    assert ensure_for_recipe(off) is None and not stats_path(off.teacher_checkpoint).exists()
    on = tiny_config(tmp_path / "on", synthesis={"feature_stats": 1.0})
    save_random_teacher(on)
    assert ensure_for_recipe(on) == stats_path(on.teacher_checkpoint) and stats_path(on.teacher_checkpoint).exists()
    assert ensure_for_recipe(on) is None  # already there: not recorded again
    bn_teacher = tiny_config(tmp_path / "bn", data={"like": "cifar10"}, teacher={"arch": "resnet18"},
                             synthesis={"feature_stats": 1.0})  # fmt: skip
    assert ensure_for_recipe(bn_teacher) is None  # BatchNorm running stats serve instead


@pytest.mark.e2e
def test_cli_records_for_a_recipe_and_reports_a_missing_teacher(tmp_path, capsys):
    from datafree.cli.feature_stats import main

    recipe = tmp_path / "r.toml"
    teacher = tmp_path / "t" / "teacher.safetensors"
    recipe.write_text(f"""
[data]
name = "fake"
like = "fashion-mnist"
fake_size = 64
root = "{tmp_path / 'data'}"
[teacher]
checkpoint = "{teacher}"
""")
    assert main(["--config", str(recipe)]) == 2
    assert "train_teacher.py" in capsys.readouterr().err  # the missing-checkpoint message names the fix
    config = tiny_config(tmp_path, teacher={"checkpoint": str(teacher)})
    save_random_teacher(config)
    assert main(["--config", str(recipe)]) == 0 and stats_path(teacher).exists()


# ---------------------------------------------------------------------------------- per-class statistics
def test_class_loss_matches_hand_computation_and_skips_classes_seen_once():
    from datafree.synthesis import class_feature_stats_loss

    # 1 channel, no space: class 0 = {1, 3} (mean 2, var 1), class 1 = {5, 9} (mean 7, var 4), class 2 = {0}
    features = {"fc": torch.tensor([[1.0], [5.0], [3.0], [9.0], [0.0]])}
    labels = torch.tensor([0, 1, 0, 1, 2])
    reference = {"fc": (torch.tensor([[2.0], [4.0], [100.0]]), torch.tensor([[1.0], [0.0], [100.0]]))}
    # class 0 matches exactly; class 1 is off by |7 - 4| + |4 - 0| = 7; class 2 has 1 image: skipped
    expected = (2 * 0.0 + 2 * 7.0) / 4
    assert class_feature_stats_loss(features, reference, labels).item() == pytest.approx(expected)
    # the pooled prior cannot tell which images belong to which class, the per-class one can
    swapped = torch.tensor([1, 0, 1, 0, 2])  # class 0 = {5, 9}: |7 - 2| + |4 - 1| = 8; class 1 = {1, 3}: 2 + 1
    assert class_feature_stats_loss(features, reference, swapped).item() == pytest.approx((2 * 8.0 + 2 * 3.0) / 4)


def test_class_stats_recorded_per_class_and_pooled_from_one_pass():
    from datafree.nets.feature_stats import record_teacher_stats
    from datafree.synthesis import class_feature_stats_loss

    net, images = _net(), torch.randn(41, 1, 8, 8)
    labels = torch.arange(41) % 3
    labels[labels == 2] = 1  # class 2 has no image: it gets the pooled statistics
    pooled, per_class = record_teacher_stats(net, zip(images.split(10), labels.split(10)), num_classes=3)
    assert tuple(per_class["0"][0].shape) == (3, 3) and tuple(per_class["2"][1].shape) == (3, 4)
    features = {"0": net[0](images), "2": net[2](net[1](net[0](images)))}
    for tap in ("0", "2"):
        for k in (0, 1):
            mean, var = channel_moments(features[tap][labels == k])
            torch.testing.assert_close(per_class[tap][0][k], mean, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(per_class[tap][1][k], var, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(per_class[tap][0][2], pooled[tap][0])
        plain = record_feature_stats(net, images.split(10), ["0", "2"])  # the pooled part = unlabelled recording
        torch.testing.assert_close(pooled[tap][0], plain[tap][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pooled[tap][1], plain[tap][1], atol=1e-5, rtol=1e-5)
    # the teacher's answers are recorded too (test_output_stats.py), and its penultimate features: the input of
    # its last Linear, 64 values per image whose moments are across the class's images
    assert set(per_class) == {"0", "2", "logits", "penultimate", "0@images", "2@images"}  # + each conv's spread
    # between images (test_class_image_stats.py)
    flat = features["2"].flatten(1)
    for k in (0, 1):
        torch.testing.assert_close(per_class["penultimate"][0][k], flat[labels == k].mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(per_class["penultimate"][1][k], flat[labels == k].var(0, unbiased=False),
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
    assert class_feature_stats_loss(features, {t: per_class[t] for t in ("0", "2")}, labels).item() < 1e-3
    with pytest.raises(ValueError, match="labels"):
        record_feature_stats(net, images.split(10), num_classes=3)


@pytest.mark.slow
def test_class_stats_file_errors_and_ensure_rerecords_an_old_file(tmp_path):
    from datafree import build
    from datafree.supervised import ensure_for_recipe
    from datafree.nets.feature_stats import has_class_stats
    from datafree.pipeline import distill_from_config

    config = tiny_config(tmp_path, synthesis={"class_feature_stats": 1.0}, train={"steps": 2, "eval_every": 2})
    save_random_teacher(config)
    with pytest.raises(ConfigError, match="per-class feature statistics.*python -m datafree.cli.feature_stats"):
        distill_from_config(config)
    path = stats_path(config.teacher_checkpoint)
    spec = build.image_spec(config)
    teacher = build.load_teacher_net(config, spec)
    save_reference(record_feature_stats(teacher, [torch.randn(8, 1, 32, 32)]), path)  # an old, pooled-only file
    with pytest.raises(ConfigError, match="no per-class statistics"):
        distill_from_config(config)
    assert ensure_for_recipe(config) == path and has_class_stats(path)
    assert ensure_for_recipe(config) is None
    wrong = {"conv1": (torch.zeros(4, 6), torch.ones(4, 6))}  # 4 classes, the data has 10
    with pytest.raises(ConfigError, match="10 classes"):
        stats_term(config, given=wrong, name="class_feature_stats")

    import json

    distill_from_config(config)
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert all(l["g_class_stats"] > 0 for l in lines) and "g_feature_stats" not in lines[0]
    assert_prior_trains_every_generator_parameter(config, teacher, "g_class_stats")


@pytest.mark.slow
def test_teacher_stats_none_reads_nothing_recorded_but_the_batchnorm_statistics(tmp_path):
    """``[teacher] stats = "none"``: the weights-only case, with a record beside the checkpoint left unread; a path
    reads a record kept elsewhere."""
    from datafree import build
    from datafree.nets.feature_stats import record_teacher_stats, save_reference, stats_path
    from datafree.pipeline import distill_from_config

    terms = [{"name": "onehot", "weight": 1.0},
             {"name": "feature_stats", "weight": 1.0, "params": {"optional": True}},
             {"name": "class_feature_stats", "weight": 1.0, "params": {"optional": True}}]  # fmt: skip
    config = tiny_config(tmp_path, synthesis=terms, train={"steps": 2, "eval_every": 2},
                         teacher={"arch": "vgg_bn_small", "stats": "none"})  # BatchNorm, and small
    save_random_teacher(config)
    spec = build.image_spec(config)
    batches = [(torch.randn(20, 1, 32, 32), torch.arange(20) % 10)]
    pooled, per_class = record_teacher_stats(build.load_teacher_net(config, spec), batches, 10)
    save_reference(pooled, stats_path(config.teacher_checkpoint), per_class)
    results = distill_from_config(config)
    assert any('class_feature_stats off (optional): [teacher] stats = "none"' in n for n in results["terms_off"])
    assert results["uses"] == ["the teacher's BatchNorm running statistics"]

    moved = tmp_path / "elsewhere.stats.safetensors"
    stats_path(config.teacher_checkpoint).rename(moved)
    config.teacher.stats, config.train.output_dir = str(moved), str(tmp_path / "second")
    results = distill_from_config(config)
    assert not results["terms_off"] and any(str(moved) in use for use in results["uses"])
