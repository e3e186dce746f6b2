"""Networks named by their library: ``torchvision:<name>[.<weights>]``, ``timm:<name>``, ``hf:<local folder>``.

``create_model("torchvision:resnet18", num_classes=10, in_channels=3)`` builds torchvision's architecture (random
weights: nothing is ever downloaded); a recipe's ``teacher.checkpoint`` (a safetensors file of its state_dict) gives
it weights. ``hf:<folder>`` is a Hugging Face ``transformers`` image classifier saved with ``save_pretrained``: its
weights come from the folder itself. What the model knows about its inputs (:class:`HubInfo`: mean/std, image size,
channels, class count and names) is read from its own metadata, where it has it:

| source | metadata |
|---|---|
| ``torchvision:resnet18.IMAGENET1K_V1`` | the weights enum's ``transforms()`` (crop size, mean, std) and ``meta["categories"]``; without ``.<weights>`` the architecture alone (no metadata: the weights are the user's) |
| ``timm:<name>.<tag>`` | the tag's ``pretrained_cfg`` (input size, mean, std, class count); without ``.<tag>`` the architecture alone |
| ``hf:<folder>`` | ``config.json`` (``id2label``) and ``preprocessor_config.json`` (``image_mean``, ``image_std``, ``size``) |

A recipe whose data does not match that metadata is refused before anything is written (:func:`check_against`);
:func:`load_teacher` hands a Python caller the network and its metadata as ``distill_datafree``'s arguments. timm
(``pip install datafree[timm]``) and transformers (``datafree[hf]``) are optional: naming them without the package
installed says which extra to install. How to get weights offline: ``python -m datafree.models.hub --help``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

SOURCES: dict[str, Callable[..., nn.Module]] = {}  # prefix -> factory(name, num_classes, in_channels, **kwargs)
DESCRIBE: dict[str, Callable[[str], "HubInfo"]] = {}  # prefix -> metadata reader


@dataclass(frozen=True)
class HubInfo:
    """What a named model says about its inputs (None / () where it says nothing)."""

    num_classes: int | None = None
    channels: int | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: tuple[str, ...] = field(default_factory=tuple)
    weights_inside: bool = False  # the model's weights come with it (an hf folder), not from teacher.checkpoint


def is_hub_name(name: str) -> bool:
    return name.split(":", 1)[0] in SOURCES and ":" in name


def register_source(prefix: str, describe: Callable[[str], HubInfo]):
    """Decorator: ``factory(name, num_classes, in_channels, **kwargs) -> nn.Module`` for ``<prefix>:<name>``."""

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        SOURCES[prefix], DESCRIBE[prefix] = factory, describe
        return factory

    return add


def split(name: str) -> tuple[str, str]:
    prefix, _, rest = name.partition(":")
    if prefix not in SOURCES or not rest:
        raise ValueError(f"{name!r} is not <source>:<model>; sources: {', '.join(f'{p}:' for p in sorted(SOURCES))}")
    return prefix, rest


def create_hub_model(name: str, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
    prefix, rest = split(name)
    info = describe(name)
    if info.channels is not None and in_channels != info.channels:
        raise ValueError(f"{name} takes {info.channels}-channel images, not {in_channels}")
    return SOURCES[prefix](rest, num_classes, in_channels, **kwargs)


def describe(name: str) -> HubInfo:
    prefix, rest = split(name)
    return DESCRIBE[prefix](rest)


def check_against(name: str, num_classes: int, channels: int, image_size: int, mean, std, role: str = "teacher") -> None:
    """A clear ValueError when the data (class count, channels, image size, normalization) is not what the named
    model was made for, according to its own metadata."""
    info = describe(name)
    problems = []
    if info.num_classes is not None and info.num_classes != num_classes:
        problems.append(f"{info.num_classes} classes (the data has {num_classes})")
    if info.channels is not None and info.channels != channels:
        problems.append(f"{info.channels}-channel images (the data's have {channels})")
    if info.image_size is not None and info.image_size != image_size:
        problems.append(f"{info.image_size} px images (the data's are {image_size} px)")
    for what, ours, theirs in (("mean", info.mean, mean), ("std", info.std, std)):
        if ours is not None and any(abs(a - b) > 1e-3 for a, b in zip(ours, tuple(theirs) * len(ours))):
            problems.append(f"inputs normalized with {what} {tuple(round(v, 4) for v in ours)} (the data's: "
                            f"{tuple(round(v, 4) for v in theirs)})")  # fmt: skip
    if problems:
        raise ValueError(f"{role} {name} was made for " + ", ".join(problems) + ": use data of its kind (data.name / "
                         "data.like; `fake` with data.like = a dataset of its kind stands in), or a model made for "
                         "this data")  # fmt: skip


def load_teacher(name: str, weights: str | Path | None = None, num_classes: int | None = None,
                 in_channels: int | None = None) -> tuple[nn.Module, dict]:  # fmt: skip
    """``(network, distill_datafree's keyword arguments)`` for a named model, with ``weights`` (a safetensors
    state_dict) where the model does not carry its own: ``distill_datafree(net, student, **kwargs, ...)``.

    The keywords are what its metadata says (``image_size``, ``channels``, ``num_classes``, ``mean``, ``std``,
    ``class_names``); what it does not say must be given here or added by the caller."""
    from datafree.io.checkpoint import load_weights

    info = describe(name)
    k = num_classes or info.num_classes
    c = in_channels or info.channels or 3
    if k is None:
        raise ValueError(f"{name} does not say how many classes it has: pass num_classes=")
    net = create_hub_model(name, k, c)
    if weights is not None:
        load_weights(net, weights, what=f"weights of {name}")
    elif not info.weights_inside:
        raise ValueError(f"{name} comes with random weights: pass weights=<a safetensors state_dict> ({_HOW})")
    known = {"image_size": info.image_size, "channels": c, "num_classes": k, "mean": info.mean, "std": info.std,
             "class_names": list(info.class_names) if len(info.class_names) == k else None}  # fmt: skip
    return net.eval(), {key: value for key, value in known.items() if value is not None}


_HOW = ("datafree never downloads: on a machine with internet, save the state_dict once, e.g. "
        "torchvision.models.resnet18(weights='DEFAULT').state_dict() with safetensors.torch.save_file, or convert a "
        "torch.save'd file with datafree.io.checkpoint.convert_torch_checkpoint, and copy it here")


# ---- torchvision ---------------------------------------------------------------------------------------------


def _torchvision_weights(rest: str):
    from torchvision import models

    arch, _, tag = rest.partition(".")
    if arch not in models.list_models():
        raise ValueError(f"torchvision has no model {arch!r}; see torchvision.models.list_models()")
    if not tag:
        return arch, None
    try:
        return arch, models.get_model_weights(arch)[tag]
    except KeyError:
        tags = [w.name for w in models.get_model_weights(arch)]
        raise ValueError(f"torchvision's {arch} has no weights {tag!r}; it has {tags}") from None


def _describe_torchvision(rest: str) -> HubInfo:
    arch, weights = _torchvision_weights(rest)
    if weights is None:
        return HubInfo(channels=3)
    transform = weights.transforms()  # builds the preprocessing object only: nothing is downloaded
    names = tuple(weights.meta.get("categories") or ())
    return HubInfo(len(names) or None, 3, int(transform.crop_size[0]), tuple(transform.mean), tuple(transform.std), names)


@register_source("torchvision", _describe_torchvision)
def torchvision_model(rest: str, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
    from torchvision import models

    arch, _ = _torchvision_weights(rest)
    if in_channels != 3:
        raise ValueError(f"torchvision's {arch} takes 3-channel images, not {in_channels}")
    return models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)


# ---- timm ----------------------------------------------------------------------------------------------------


def _optional(module: str, source: str, extra: str):
    """An optional library a hub source needs, or one line saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{source}: models need the {module} package: pip install 'datafree[{extra}]' (or pip install "
                         f"{module})") from None  # fmt: skip


def _timm():
    return _optional("timm", "timm", "timm")


def _describe_timm(rest: str) -> HubInfo:
    timm = _timm()
    arch, _, tag = rest.partition(".")
    if not timm.is_model(arch):
        raise ValueError(f"timm has no model {arch!r}; see timm.list_models()")
    if not tag:  # the architecture alone: the weights (teacher.checkpoint) are the user's, of any input
        return HubInfo()
    cfg = timm.models.get_pretrained_cfg(rest)
    if cfg is None:
        raise ValueError(f"timm's {arch} has no pretrained tag {tag!r}; see timm.list_pretrained('{arch}*')")
    channels, size = cfg.input_size[0], cfg.input_size[-1]
    return HubInfo(cfg.num_classes or None, channels, size, tuple(cfg.mean), tuple(cfg.std))


@register_source("timm", _describe_timm)
def timm_model(rest: str, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
    return _timm().create_model(rest, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)


# ---- Hugging Face transformers (a local folder) ----------------------------------------------------------------


def _folder(rest: str) -> Path:
    folder = Path(rest).expanduser()
    if not (folder / "config.json").is_file():
        raise ValueError(f"hf:{rest}: {folder} holds no config.json; save the model there with "
                         "model.save_pretrained(folder) and image_processor.save_pretrained(folder) on a machine "
                         "that has it (datafree never downloads)")  # fmt: skip
    return folder


def _transformers():
    return _optional("transformers", "hf", "hf")


def _describe_hf(rest: str) -> HubInfo:
    import json

    folder = _folder(rest)
    config = json.loads((folder / "config.json").read_text())
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForImageClassification") for a in architectures):
        raise ValueError(f"hf:{rest} is not an image classifier (its config names {architectures or 'no architecture'}"
                         "; datafree needs an AutoModelForImageClassification)")  # fmt: skip
    labels = config.get("id2label") or {}
    names = tuple(labels[k] for k in sorted(labels, key=int)) if labels else ()
    processor = folder / "preprocessor_config.json"
    mean = std = size = None
    if processor.is_file():
        p = json.loads(processor.read_text())
        mean, std = tuple(p["image_mean"]) if "image_mean" in p else None, tuple(p["image_std"]) if "image_std" in p else None
        crop = p.get("crop_size") if p.get("do_center_crop") else None
        raw = crop or p.get("size")
        size = raw.get("height", raw.get("shortest_edge")) if isinstance(raw, dict) else raw
    return HubInfo(len(names) or config.get("num_labels"), config.get("num_channels", 3), size, mean, std, names,
                   weights_inside=True)  # fmt: skip


@register_source("hf", _describe_hf)
def hf_model(rest: str, num_classes: int, in_channels: int, **kwargs) -> nn.Module:
    info = _describe_hf(rest)
    if info.num_classes is not None and info.num_classes != num_classes:
        raise ValueError(f"hf:{rest} has {info.num_classes} classes, not {num_classes}")
    model = _transformers().AutoModelForImageClassification.from_pretrained(str(_folder(rest)), local_files_only=True,
                                                                            **kwargs)  # fmt: skip
    return model


if __name__ == "__main__":
    print(__doc__, "\nGetting weights:", _HOW)
