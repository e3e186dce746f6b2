"""Teachers the BatchNorm zoo does not cover: GroupNorm / LayerNorm (token) features, no Linear head, the penultimate
layer named once (where it is recorded), and messages that speak to the Python caller."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from datafree import distill_datafree
from datafree.config import ConfigError
from datafree.nets.feature_stats import (PENULTIMATE_TAP, batchnorm_reference, default_stats_taps, load_reference,
                                    record_feature_stats, record_teacher_stats, save_reference)  # fmt: skip
from datafree.nets.features import FeatureTaps, penultimate_tap
from datafree.models import create_model

TINY = {"steps": 2, "batch_size": 8, "eval_every": 2, "log_every": 1, "mixed_precision": "no"}


def labelled(n: int = 2, size: int = 16, classes: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(12, 1, size, size, generator=g), torch.arange(12) % classes) for _ in range(n)]


def run(tmp_path, teacher: nn.Module, **kwargs) -> dict:
    student = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    return distill_datafree(teacher, student, image_size=16, channels=1, num_classes=4, mean=(0.3,), std=(0.35,),
                            train={**TINY, "output_dir": str(tmp_path / "run")}, **kwargs)  # fmt: skip


def test_token_features_are_tapped_channels_second_and_channel_first_1d_layers_are_left_alone():
    vit = create_model("vit_tiny", num_classes=4, in_channels=1).eval()
    taps = FeatureTaps(vit, ["blocks.0.norm1:input", "blocks.1"])
    out = taps.run(torch.randn(3, 1, 16, 16))
    taps.remove()
    assert out.features["blocks.0.norm1:input"].shape == (3, 96, 16)  # (N, C, T): 16 tokens of 96 features
    assert out.features["blocks.1"].shape == (3, 96, 16)
    norm = nn.Sequential(nn.Conv1d(2, 8, 1), nn.GroupNorm(2, 8))  # (N, C, L) already: not transposed
    taps = FeatureTaps(norm, ["1:input", "1"])
    out = taps.run(torch.randn(3, 2, 5))
    assert out.features["1:input"].shape == out.features["1"].shape == (3, 8, 5)


def test_a_vit_records_per_feature_statistics_over_images_and_tokens_at_its_layernorms():
    vit = create_model("vit_tiny", num_classes=4, in_channels=1).eval()
    taps = default_stats_taps(vit)
    assert taps[:2] == ["blocks.0.norm1:input", "blocks.0.norm2:input"] and taps[-1] == "norm:input" and len(taps) == 9
    images = torch.randn(10, 1, 16, 16)
    reference = record_feature_stats(vit, images.split(4))
    seen = {}
    hook = vit.blocks[1].norm2.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0].detach()))
    with torch.no_grad():
        vit(images)
    hook.remove()
    tokens = seen["x"].reshape(-1, 96).double()  # every image's every token: one row per (image, token)
    mean, var = reference["blocks.1.norm2:input"]
    assert mean.shape == (96,)  # per feature, not per token (16)
    torch.testing.assert_close(mean.double(), tokens.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(var.double(), tokens.var(0, unbiased=False), rtol=1e-3, atol=1e-5)


def test_groupnorm_teachers_record_their_norms_inputs_and_batchnorm_ones_keep_their_conv_outputs():
    assert default_stats_taps(create_model("gn_cnn", 10, 1))[:2] == ["features.0.1:input", "features.2.1:input"]
    assert default_stats_taps(create_model("vgg_bn", 10, 1))[:2] == ["features.0.0", "features.2.0"]
    assert default_stats_taps(create_model("lenet5", 10, 1)) == ["conv1", "conv2", "conv3"]  # declared
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4))
    mlp[2].running_mean.fill_(0.5)
    reference = batchnorm_reference(mlp)  # BatchNorm1d keeps running statistics too: the pooled prior reads them
    assert list(reference) == ["2:input"] and torch.equal(reference["2:input"][0], torch.full((8,), 0.5))


@pytest.mark.slow
def test_without_a_linear_the_penultimate_feature_is_the_head_convs_input_pooled_over_positions(tmp_path, capsys):
    net = create_model("allconv", num_classes=4, in_channels=1, widths=(8, 8, 8)).eval()
    assert net.feature_layer == penultimate_tap(net) == "head:input"
    batches = labelled()
    _, per_class = record_teacher_stats(net, batches, num_classes=4)
    assert per_class.feature_layer == "head:input"
    maps = []
    hook = net.head.register_forward_hook(lambda m, i, o: maps.append(i[0].detach()))
    with torch.no_grad():
        for images, _ in batches:
            net(images)
    hook.remove()
    pooled = torch.cat(maps).mean(dim=(2, 3)).double()  # (N, 8): what the head's global pooling averages
    labels = torch.cat([y for _, y in batches])
    mean, var = per_class[PENULTIMATE_TAP]
    assert mean.shape == (4, 8)
    torch.testing.assert_close(mean[1].double(), pooled[labels == 1].mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(var[1].double(), pooled[labels == 1].var(0, unbiased=False), rtol=1e-3, atol=1e-6)
    net.train()
    results = run(tmp_path, net, class_feature_stats=per_class)  # was refused: "has no nn.Linear layer"
    assert results["penultimate_layer"] == ["head:input"] and results["terms_off"] == []
    assert "per-class penultimate features passed as class_feature_stats=" in results["uses"]
    assert "the teacher's penultimate feature: head:input" in capsys.readouterr().out


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                      nn.Linear(32, 16), nn.ReLU())  # fmt: skip
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.features(x))


@pytest.mark.slow
def test_feature_layer_is_given_once_to_the_recording_and_read_from_the_record(tmp_path):
    torch.manual_seed(0)
    teacher = Plain().eval()
    pooled, per_class = record_teacher_stats(teacher, labelled(), num_classes=4, feature_layer="features.4")
    assert per_class.feature_layer == pooled.feature_layer == "features.4"
    assert per_class[PENULTIMATE_TAP][0].shape == (4, 16)  # the Linear(32, 16)'s output (before its ReLU)
    path = tmp_path / "t.stats.safetensors"
    save_reference(pooled, path, per_class)
    assert load_reference(path, per_class=True).feature_layer == "features.4"  # a saved record keeps it
    teacher.train()
    results = run(tmp_path, teacher, feature_stats=pooled, class_feature_stats=per_class)
    assert results["penultimate_layer"] == ["features.4"]  # read from the record, not the default "fc:input"
    with pytest.raises(ConfigError, match="recorded with the penultimate features at 'features.4'"):
        run(tmp_path / "again", teacher, class_feature_stats=per_class, feature_layer="fc:input")


@pytest.mark.slow
def test_a_teacher_from_python_without_statistics_is_told_which_arguments_to_pass(tmp_path):
    results = run(tmp_path, Plain())
    notes = " ".join(results["terms_off"])
    assert "nothing was passed as feature_stats= to distill_datafree" in notes
    assert "nothing was passed as class_feature_stats=" in notes and "checkpoint" not in notes
    with pytest.raises(ConfigError, match=r"record_teacher_stats\(teacher, labelled_batches, num_classes=K\)"):
        run(tmp_path / "required", Plain(), synthesis=[{"name": "feature_stats", "weight": 1.0}])


def test_label_smoothing_is_validated_and_the_held_out_pairs_parse():
    import datafree.bench.zoo as bench
    from datafree.config import from_dict, validate

    config = from_dict({"teacher_training": {"label_smoothing": 1.0}})
    with pytest.raises(ConfigError, match="label_smoothing must be in"):
        validate(config)
    assert bench.parse_pair("vgg_bn#label_smoothing=0.1:mlp") == ("vgg_bn", "mlp", "", {"label_smoothing": "0.1"})
    assert bench.parse_pair("vgg_bn#no_such_key=1:mlp") is None
    held_out = bench.HELD_OUT.split(",")
    assert len(held_out) >= 6 and not set(held_out) & set(bench.TUNED.split(","))
    assert {bench.part_of(p) for p in held_out} == {"held-out"} and bench.part_of("lenet5:lenet5_half") == "tuned"
    base = from_dict({"name": "zoo"})
    c = bench.pair_config(base, "vgg_bn", "mlp", bench.Path("/tmp/x"), False, "", {"label_smoothing": "0.1"})
    assert c.teacher_training.label_smoothing == 0.1 and "label_smoothing0.1" in c.teacher.checkpoint
    plain = bench.pair_config(base, "vgg_bn", "mlp", bench.Path("/tmp/x"), False)
    assert plain.teacher.checkpoint != c.teacher.checkpoint  # the smoothed teacher is another teacher


class HFStyleOutput(dict):
    """What a transformers classifier returns: a dict whose entries are attributes too (ModelOutput)."""

    __getattr__ = dict.__getitem__


class Wrapped(nn.Module):
    def __init__(self, net: nn.Module, kind: str):
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x):
        logits = self.net(x)
        if self.kind == "hf":
            return HFStyleOutput(logits=logits, hidden_states=None)
        if self.kind == "tuple":
            return logits, logits.detach() * 0  # (logits, aux), as return_dict=False or an aux head gives
        return {"features": logits}  # no logits anywhere


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hf", "tuple"])
def test_a_teacher_returning_an_object_with_logits_or_a_tuple_distills_and_evaluates(tmp_path, kind):
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    eval_set = TensorDataset(torch.randn(16, 1, 16, 16), torch.arange(16) % 4)
    results = run(tmp_path, Wrapped(Plain(), kind), eval_set=eval_set)  # was: AttributeError ... has no attribute 'ndim'
    assert results["steps"] == 2 and results["teacher_acc"] is not None


def test_a_teacher_returning_something_else_is_refused_naming_what_it_returned(tmp_path):
    with pytest.raises(ConfigError, match=r"returned a dict with keys \['features'\], not logits"):
        run(tmp_path, Wrapped(Plain(), "dict"))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_1x1_strided_conv_of_few_channels_keeps_channels_last_off_at_48_px_and_more():
    """torch 2.14's oneDNN crashes (segfault) in such a conv's channels_last weight gradient on 64-px maps: the
    guard names the layer; the zoo's sizes and wider convs keep channels_last."""
    from datafree.nets.netcheck import channels_last_hazard
    from datafree.nets.spec import ImageSpec

    narrow, wide = create_model("resnet8_narrow", 10, 3), create_model("resnet20", 10, 3)
    at = lambda size: ImageSpec(3, size, 10, (0.5,) * 3, (0.25,) * 3)  # noqa: E731
    reason = channels_last_hazard([wide, narrow], at(64), torch.device("cpu"))
    assert reason and "stage2.0.shortcut.0" in reason and "8 input channels" in reason
    assert channels_last_hazard([narrow], at(32), torch.device("cpu")) is None  # the zoo's sizes
    assert channels_last_hazard([wide], at(64), torch.device("cpu")) is None  # 16 input channels: fine
