"""Teachers named by their library (torchvision:, timm:, hf:), offline, on randomly initialised weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from datafree.config import ConfigError
from datafree.models import create_model
from datafree.models.hub import check_against, describe, load_teacher
from datafree.nets.spec import ImageSpec

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_torchvision_by_name_with_its_weights_metadata_read_offline(tmp_path):
    info = describe("torchvision:resnet18.IMAGENET1K_V1")
    assert (info.num_classes, info.channels, info.image_size) == (1000, 3, 224)
    assert info.mean == pytest.approx(IMAGENET_MEAN) and info.class_names[0] == "tench"
    assert describe("torchvision:resnet18").num_classes is None  # the architecture alone: the weights are the user's
    net = create_model("torchvision:resnet18", num_classes=10, in_channels=3)
    assert net.feature_layer == "fc:input" and net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="never downloads"):
        load_teacher("torchvision:resnet18.IMAGENET1K_V1")  # random weights are no teacher
    weights = tmp_path / "resnet18.safetensors"
    save_file(create_model("torchvision:resnet18", 1000, 3).state_dict(), str(weights))
    teacher, kwargs = load_teacher("torchvision:resnet18.IMAGENET1K_V1", weights=weights)
    assert kwargs["image_size"] == 224 and kwargs["num_classes"] == 1000 and len(kwargs["class_names"]) == 1000
    assert kwargs["mean"] == pytest.approx(IMAGENET_MEAN) and not teacher.training


def test_data_that_does_not_match_the_named_model_is_refused_naming_what_differs():
    with pytest.raises(ValueError) as err:
        check_against("torchvision:resnet18.IMAGENET1K_V1", 10, 1, 32, (0.286,), (0.353,))
    message = str(err.value)
    assert "1000 classes (the data has 10)" in message and "3-channel images" in message and "224 px" in message
    from datafree.nets.netcheck import build_net

    with pytest.raises(ConfigError, match="was made for 1000 classes"):
        build_net("torchvision:resnet18.IMAGENET1K_V1", ImageSpec(1, 32, 10, (0.286,), (0.353,)))
    with pytest.raises(ConfigError, match="torchvision has no model 'resnet19'"):
        build_net("torchvision:resnet19", ImageSpec(3, 32, 10, IMAGENET_MEAN, IMAGENET_STD))
    with pytest.raises(ValueError, match="unknown model source"):
        create_model("tf:resnet18", 10, 3)


@pytest.mark.slow
def test_a_recipe_distills_a_torchvision_teacher_named_in_it(tmp_path):
    from datafree.pipeline import distill_from_config
    from tests.conftest import save_random_teacher, tiny_config

    config = tiny_config(tmp_path, data={"like": "cifar10", "fake_size": 32, "eval_batch_size": 16},
                         teacher={"arch": "torchvision:resnet18"}, student={"arch": "resnet8_narrow"},
                         train={"steps": 2, "batch_size": 8, "eval_every": 2})  # fmt: skip
    save_random_teacher(config)
    results = distill_from_config(config)
    assert results["steps"] == 2 and results["teacher_params"] > 11_000_000  # torchvision's ResNet-18


def test_timm_by_name_and_its_pretrained_cfg():
    pytest.importorskip("timm")
    info = describe("timm:resnet18.a1_in1k")
    assert info.image_size == 224 and info.mean == pytest.approx(IMAGENET_MEAN) and info.num_classes == 1000
    assert describe("timm:resnet18").image_size is None  # the architecture alone: the user's weights
    net = create_model("timm:resnet18", num_classes=10, in_channels=1)  # timm adapts the stem to 1 channel
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def _tiny_vit_folder(folder, classifier: bool = True):
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, num_labels=4,
                                    id2label={i: name for i, name in enumerate("abcd")},
                                    label2id={name: i for i, name in enumerate("abcd")})  # fmt: skip
    torch.manual_seed(0)
    model = (transformers.ViTForImageClassification if classifier else transformers.ViTModel)(config)
    model.save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.3], image_std=[0.35]).save_pretrained(folder)
    return model


@pytest.mark.slow
def test_an_hf_image_classifier_from_a_local_folder_distills_with_its_own_metadata(tmp_path):
    from datafree import distill_datafree

    _tiny_vit_folder(tmp_path / "vit")
    teacher, kwargs = load_teacher(f"hf:{tmp_path / 'vit'}")  # weights from the folder
    assert kwargs == {"image_size": 16, "channels": 1, "num_classes": 4, "mean": (0.3,), "std": (0.35,),
                      "class_names": ["a", "b", "c", "d"]}  # fmt: skip
    student = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    results = distill_datafree(teacher, student, **kwargs, train={"steps": 2, "batch_size": 8, "eval_every": 2,
                               "log_every": 1, "mixed_precision": "no", "output_dir": str(tmp_path / "run")})  # fmt: skip
    assert results["steps"] == 2  # its forward returns an ImageClassifierOutput: the logits are read from it


def test_an_hf_folder_that_is_not_an_image_classifier_or_has_no_config_is_refused(tmp_path):
    _tiny_vit_folder(tmp_path / "backbone", classifier=False)
    with pytest.raises(ValueError, match="is not an image classifier"):
        describe(f"hf:{tmp_path / 'backbone'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no config.json"):
        describe(f"hf:{tmp_path / 'empty'}")
    _tiny_vit_folder(tmp_path / "vit")
    assert len(json.loads((tmp_path / "vit" / "config.json").read_text())["id2label"]) == 4
    with pytest.raises(ValueError, match="has 4 classes, not 10"):
        create_model(f"hf:{tmp_path / 'vit'}", num_classes=10, in_channels=1)


def test_a_missing_optional_library_names_the_extra_that_installs_it():
    from datafree.models.hub import _optional

    with pytest.raises(ValueError, match=r"^hf: models need the no_such_pkg package: pip install 'datafree\[hf\]'"):
        _optional("no_such_pkg", "hf", "hf")
    assert _optional("json", "x", "x").dumps([1]) == "[1]"  # an installed one is returned as the module
