"""Networks by name, and the dry forward that proves a network fits the images, before anything trains."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from datafree.io import checkpoint as ckpt
from datafree.config import ConfigError
from datafree.nets.features import FeatureTaps
from datafree.nets.spec import ImageSpec


@torch.no_grad()
def check_network(net: nn.Module, spec: ImageSpec, role: str, taps: list[str] = ()) -> dict[str, tuple[int, ...]]:
    """Dry forward on a 2-image batch: the net must take the images and emit ``num_classes`` logits.

    Returns the per-sample shapes of the requested taps. The net's mode and hooks are left as they were.
    """
    x = torch.zeros(2, spec.channels, spec.image_size, spec.image_size,
                    device=next(iter(net.parameters()), torch.zeros(())).device)  # fmt: skip
    was_training = net.training
    net.eval()
    hooks = FeatureTaps(net, list(taps))
    try:
        out = hooks.run(x)
    except TypeError as err:
        if "not logits" not in str(err):
            raise
        raise ConfigError(f"the {role} ({type(net).__name__}): {err}") from None
    except RuntimeError as err:
        raise ConfigError(
            f"the {role} ({type(net).__name__}) cannot take images of shape ({spec.channels}, {spec.image_size}, "
            f"{spec.image_size}): {str(err).splitlines()[0]}. Use the image size / channel count the {role} was "
            "built for (data.name / data.like decide them) or another architecture."
        ) from None
    finally:
        hooks.remove()
        net.train(was_training)
    logits = out.logits
    if logits.ndim != 2 or logits.shape[1] != spec.num_classes:
        raise ConfigError(f"the {role} outputs {tuple(logits.shape[1:])} logits per image but the dataset has "
                          f"{spec.num_classes} classes; build it with num_classes={spec.num_classes}")  # fmt: skip
    return {name: tuple(value.shape[1:]) for name, value in out.features.items()}


def memory_format_of(net: nn.Module) -> torch.memory_format:
    """channels_last if every 4-D parameter that says which is stored so, else contiguous_format.

    A weight with one input channel or a 1x1 kernel (a grey image's first conv, (C, 1, 3, 3); a pointwise conv) is
    contiguous in both formats and says nothing: counting it as plain-contiguous made every grey channels_last
    network read as contiguous, and its BatchNorm-folded copy ran in the slower plain layout."""
    weights = [p for p in net.parameters() if p.dim() == 4]
    telling = [p for p in weights if not (p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last))]
    if telling and all(p.is_contiguous(memory_format=torch.channels_last) for p in telling):
        return torch.channels_last
    return torch.contiguous_format


def build_net(arch: str, spec: ImageSpec, **kwargs) -> nn.Module:
    """A registered architecture or a named one (``torchvision:``, ``timm:``, ``hf:``) for these images; a named
    model whose own metadata says it was made for other data is a ConfigError (datafree/models/hub.py)."""
    from datafree.models import create_model
    from datafree.models.hub import check_against, is_hub_name

    try:
        if is_hub_name(arch):
            check_against(arch, spec.num_classes, spec.channels, spec.image_size, spec.mean, spec.std, role="model")
        return create_model(arch, num_classes=spec.num_classes, in_channels=spec.channels, **kwargs)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def load_network(arch: str, checkpoint: str | Path, spec: ImageSpec, role: str = "teacher") -> nn.Module:
    """A registered architecture with its trained weights, checked against the images and the class count (a named
    model whose weights come with it, an ``hf:`` folder, takes them from there when the checkpoint does not exist)."""
    from datafree.models.hub import describe, is_hub_name

    net = build_net(arch, spec)
    check_network(net, spec, f"{role} {arch!r}")
    path = Path(checkpoint)
    if is_hub_name(arch) and describe(arch).weights_inside and not path.exists():
        return net
    meta = ckpt.read_metadata(path) if path.exists() and path.suffix == ".safetensors" else {}
    if meta.get("num_classes") and int(meta["num_classes"]) != spec.num_classes:
        raise ConfigError(f"{role} checkpoint {path} has {meta['num_classes']} classes but the data has "
                          f"{spec.num_classes}; use a matching {role} or dataset")  # fmt: skip
    return ckpt.load_weights(net, path, what=f"{role} checkpoint")


def channels_last_hazard(modules: list[nn.Module], spec: ImageSpec, device: torch.device) -> str | None:
    """Why channels_last must stay off on CPU for these networks, or None (checked on every CPU: the crash is in
    oneDNN's own kernels, which ATen's capability setting does not choose).

    torch 2.14's oneDNN (AVX-512 kernels) corrupts the heap in the weight gradient of a 1x1 strided convolution with
    fewer than 16 input channels on channels_last inputs of 48 px or more: the process dies with a segfault or
    "double free" (found here: ``Conv2d(8, 16, 1, stride=2)`` on a 64 x 64 map; 16 input channels, 3x3 kernels,
    40 px and the contiguous layout are fine, so are AVX2 kernels, ``ONEDNN_MAX_CPU_ISA=AVX2``). The zoo's 28/32-px
    images never reach it; a 64-px ResNet-8 student's first projection shortcut does."""
    if device.type != "cpu" or spec.image_size < 48:
        return None
    for module in modules:
        for name, layer in module.named_modules():
            if (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and max(layer.stride) > 1
                    and layer.in_channels < 16):  # fmt: skip
                return (f"{type(module).__name__}'s {name} (a 1x1 strided convolution of {layer.in_channels} input "
                        f"channels) would crash oneDNN's channels_last weight gradient at {spec.image_size} px on "
                        "CPU (datafree.nets.netcheck.channels_last_hazard)")
    return None
