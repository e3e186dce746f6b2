"""Model registry: exact DAFL sizes, output shapes, hook-tappable features and the inspection CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from datafree.nets.features import FeatureTaps
from datafree.models import create_model, list_models, register_model
from datafree.models import registry

REPO = Path(__file__).resolve().parents[1]

# name -> (create kwargs, input shape (C, H, W), {tap: expected per-sample shape}); feature_layer included.
CASES = {
    "lenet5": (dict(num_classes=10, in_channels=1), (1, 32, 32),
               {"flatten": (120,), "relu1": (6, 28, 28), "relu2": (16, 10, 10), "relu3": (120, 1, 1)}),
    "lenet5_half": (dict(num_classes=10, in_channels=1), (1, 32, 32),
                    {"flatten": (60,), "relu1": (3, 28, 28), "relu2": (8, 10, 10), "relu3": (60, 1, 1)}),
    "resnet18": (dict(num_classes=10), (3, 32, 32),
                 {"flatten": (512,), "layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8), "layer4": (512, 4, 4)}),
    "resnet34": (dict(num_classes=100), (3, 32, 32),
                 {"flatten": (512,), "layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8), "layer4": (512, 4, 4)}),
    "alexnet": (dict(num_classes=8), (3, 64, 64),
                {"relu7": (2048,), "relu1": (64, 32, 32), "relu2": (192, 16, 16), "relu5": (256, 8, 8)}),
    "alexnet_half": (dict(num_classes=8), (3, 64, 64),
                     {"relu7": (1024,), "relu1": (32, 32, 32), "relu2": (96, 16, 16), "relu5": (128, 8, 8)}),
    # the zoo (datafree/models/zoo.py): shapes by hand from 28x28 (pools floor, stride-2 convs with padding ceil)
    "vgg_bn": (dict(num_classes=10, in_channels=1), (1, 28, 28),
               {"features.1": (32, 14, 14), "features.3": (64, 7, 7), "features.6": (128, 3, 3), "head.2": (256,)}),
    "vgg_bn_small": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                     {"features.1": (8, 14, 14), "features.3": (16, 7, 7), "features.6": (32, 3, 3), "head.2": (64,)}),
    "resnet20": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                 {"stage1": (16, 28, 28), "stage2": (32, 14, 14), "stage3": (64, 7, 7), "flatten": (64,)}),
    "resnet8": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                {"stage1": (16, 28, 28), "stage2": (32, 14, 14), "stage3": (64, 7, 7), "flatten": (64,)}),
    "resnet8_narrow": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                       {"stage1": (8, 28, 28), "stage2": (16, 14, 14), "stage3": (32, 7, 7), "flatten": (32,)}),
    # the 64-px task's pair: a stride-2 stem, then the stages at half the image's size
    "resnet20_s2": (dict(num_classes=10, in_channels=3), (3, 64, 64),
                    {"stage1": (16, 32, 32), "stage2": (32, 16, 16), "stage3": (64, 8, 8), "flatten": (64,)}),
    "resnet8_narrow_s2": (dict(num_classes=10, in_channels=3), (3, 64, 64),
                          {"stage1": (8, 32, 32), "stage2": (16, 16, 16), "stage3": (32, 8, 8), "flatten": (32,)}),
    "mobilenet_small_s2": (dict(num_classes=10, in_channels=3), (3, 64, 64),
                           {"blocks.1": (64, 16, 16), "blocks.3": (128, 8, 8), "blocks.5": (256, 4, 4), "flatten": (256,)}),
    "mobilenet_tiny_s2": (dict(num_classes=10, in_channels=3), (3, 64, 64),
                          {"blocks.1": (32, 16, 16), "blocks.3": (64, 8, 8), "blocks.5": (128, 4, 4), "flatten": (128,)}),
    "mobilenet_small": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                        {"blocks.1": (64, 14, 14), "blocks.3": (128, 7, 7), "blocks.5": (256, 4, 4), "flatten": (256,)}),
    "mobilenet_tiny": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                       {"blocks.1": (32, 14, 14), "blocks.3": (64, 7, 7), "blocks.5": (128, 4, 4), "flatten": (128,)}),
    # the held-out families (datafree/models/families.py), from 28x28 by hand; token layers (N, T, C) are tapped
    # channels-second (datafree/nets/features.py): a ViT block at 28 px is (96 features, 7 x 7 = 49 tokens)
    "plain_cnn": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                  {"features.2": (16, 14, 14), "features.6": (32, 14, 14), "features.9": (64, 7, 7), "fc:input": (64,)}),
    "mlp": (dict(num_classes=10, in_channels=1), (1, 28, 28), {"relu1": (256,), "relu2": (128,), "fc3:input": (128,)}),
    "gn_cnn": (dict(num_classes=10, in_channels=1), (1, 28, 28),
               {"features.1": (32, 14, 14), "features.3": (64, 7, 7), "features.6": (128, 3, 3), "head.4:input": (256,)}),
    "vit_tiny": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                 {"blocks.1": (96, 49), "blocks.3": (96, 49), "fc:input": (96,)}),
    "allconv": (dict(num_classes=10, in_channels=1), (1, 28, 28),
                {"stage1": (32, 14, 14), "stage2": (64, 7, 7), "stage3": (64, 7, 7), "head:input": (64, 7, 7)}),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_registered_model_is_covered():
    assert sorted(CASES) == list_models()


@pytest.mark.parametrize("name, expected", [("lenet5", 61_706), ("lenet5_half", 15_738)])
def test_lenet_exact_parameter_counts(name, expected):
    assert n_params(create_model(name, num_classes=10, in_channels=1)) == expected


def test_resnet_parameter_counts_match_cifar_reference():
    assert n_params(create_model("resnet18", num_classes=10)) == 11_173_962
    assert n_params(create_model("resnet34", num_classes=10)) == 21_282_122


def test_half_alexnet_is_about_four_times_smaller():
    ratio = n_params(create_model("alexnet", num_classes=40)) / n_params(create_model("alexnet_half", num_classes=40))
    assert 3.5 < ratio < 4.5


@pytest.mark.parametrize(
    "name, num_classes",
    [("lenet5", 10), ("lenet5_half", 10), ("resnet18", 10), ("resnet18", 100),
     ("resnet34", 10), ("resnet34", 100), ("alexnet", 8), ("alexnet_half", 8)],
)
def test_logits_and_declared_features_have_expected_shapes(name, num_classes):
    kwargs, shape, expected = CASES[name]
    model = create_model(name, **{**kwargs, "num_classes": num_classes}).eval()
    assert isinstance(model.feature_layer, str) and isinstance(model.default_taps, tuple)
    assert set(expected) == {model.feature_layer, *model.default_taps}
    batch = 1 if name.startswith("resnet") else 2  # keep the file fast on a shared 2-core CPU; LeNets/AlexNets check B=2
    with torch.no_grad():
        out = FeatureTaps(model, [model.feature_layer, *model.default_taps]).run(torch.randn(batch, *shape))
    assert out.logits.shape == (batch, num_classes)
    assert {k: tuple(v.shape) for k, v in out.features.items()} == {k: (batch, *v) for k, v in expected.items()}
    # The DAFL feature is a flat vector "before the fully-connected layer(s)": some nn.Linear consumes it.
    assert expected[model.feature_layer][0] in {m.in_features for m in model.modules() if isinstance(m, nn.Linear)}


def test_in_channels_is_honoured():
    assert create_model("lenet5", num_classes=10, in_channels=3)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert create_model("alexnet_half", num_classes=4, in_channels=1)(torch.randn(2, 1, 64, 64)).shape == (2, 4)
    assert create_model("resnet18", num_classes=10, in_channels=1).conv1.in_channels == 1


def test_resnet_feature_is_the_classifier_input_at_larger_sizes():
    model = create_model("resnet18", num_classes=10).eval()
    with torch.no_grad():
        out = FeatureTaps(model, ["flatten"]).run(torch.randn(1, 3, 40, 40))
        assert out.features["flatten"].shape == (1, 512)
        torch.testing.assert_close(model.linear(out.features["flatten"]), out.logits)


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_inplace_activations(name):
    kwargs, _, _ = CASES[name]
    inplace = [n for n, m in create_model(name, **kwargs).named_modules() if getattr(m, "inplace", False)]
    assert inplace == []


def test_unknown_name_lists_known_models():
    with pytest.raises(ValueError) as err:
        create_model("resnet999", num_classes=10)
    for name in list_models():
        assert name in str(err.value)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5")(lambda num_classes, in_channels: nn.Linear(in_channels, num_classes))


def test_user_model_gets_fallback_taps_and_bad_taps_are_caught():
    class Bare(nn.Module):
        def __init__(self, num_classes, in_channels):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 4, 5))
            self.head = nn.Linear(5, num_classes)

        def forward(self, x):
            return self.head(self.body(x))

    class Typo(Bare):
        feature_layer = "nope"

    register_model("_test_bare")(Bare)
    register_model("_test_typo")(Typo)
    try:
        model = create_model("_test_bare", num_classes=3, in_channels=2)
        assert model.feature_layer == "head:input" and model.default_taps == ()
        with pytest.raises(ValueError, match="nope"):
            create_model("_test_typo", num_classes=3, in_channels=2)
    finally:
        registry._REGISTRY.pop("_test_bare", None)
        registry._REGISTRY.pop("_test_typo", None)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "datafree.models", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.e2e
def test_cli_shows_layers_and_marks_taps():
    result = _cli("lenet5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    flatten = next(line for line in lines if line.startswith("flatten"))
    assert "120" in flatten and "feature_layer" in flatten
    assert "default tap" in next(line for line in lines if line.startswith("relu2"))


@pytest.mark.e2e
def test_cli_lists_models_and_rejects_unknown_ones(capsys):
    from datafree.models.__main__ import main

    main([])
    listing = capsys.readouterr().out
    assert "61,706" in listing and all(name in listing for name in list_models())
    with pytest.raises(SystemExit) as exit_info:
        main(["nosuchnet"])
    assert exit_info.value.code != 0 and "lenet5" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["plain_cnn", "mlp", "gn_cnn", "vit_tiny", "allconv"])
def test_held_out_families_declare_taps_of_the_shapes_computed_by_hand(name):
    kwargs, shape, expected = CASES[name]
    model = create_model(name, **kwargs).eval()
    assert set(expected) == {model.feature_layer, *model.default_taps}
    with torch.no_grad():
        out = FeatureTaps(model, list(expected)).run(torch.randn(2, *shape))
    assert out.logits.shape == (2, 10)
    assert {k: tuple(v.shape) for k, v in out.features.items()} == {k: (2, *v) for k, v in expected.items()}
    big = create_model(name, **kwargs).eval()(torch.randn(2, 1, 32, 32))  # 28 and 32 px alike
    assert big.shape == (2, 10)
