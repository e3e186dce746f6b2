"""Name -> generator factory. Every factory takes (latent_dim, image_size, channels, **recipe knobs)."""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from generators.upsampled import Upsampled, coarse_size

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_generator(name: str):
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return add


def list_generators() -> list[str]:
    return sorted(_REGISTRY)


def takes_argument(name: str, argument: str) -> bool:
    """Whether generator ``name``'s factory takes ``argument`` (by name, or through ``**kwargs``)."""
    parameters = inspect.signature(_REGISTRY[name]).parameters.values()
    return any(p.name == argument or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def tone_wanted(name: str, tone: str, channels: int) -> bool:
    """Whether generator ``name`` gets ``generator.tone`` (generators/tone.py): "on", or "auto" for colour images
    (channels > 1) where its factory takes a ``tone`` argument; ValueError for "on" where it does not, and for
    any other value (a Python ``tone=True`` would otherwise read as off)."""
    if tone not in ("off", "on", "auto"):
        raise ValueError(f"generator tone must be \"off\", \"on\" or \"auto\" (generators/tone.py), got {tone!r}")
    takes = takes_argument(name, "tone")
    if tone == "on" and not takes:
        raise ValueError(f"generator.arch = {name!r} does not take generator.tone (its factory has no `tone` argument); "
                         "set generator.tone = \"off\", or give the factory one (generators/tone.py)")  # fmt: skip
    return tone == "on" or (tone == "auto" and channels > 1 and takes)


def create_generator(name: str, latent_dim: int, image_size: int, channels: int, upsample: int = 1,
                     tone: str = "off", **kwargs) -> nn.Module:  # fmt: skip
    """``upsample`` > 1: the generator built for ``image_size / upsample`` and enlarged (generators/upsampled.py);
    ``tone``: "off", "on" or "auto" (:func:`tone_wanted`), passed to the factory only when on, so that a factory
    without the argument serves every other recipe."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown generator {name!r}; registered generators: {', '.join(list_generators())}")
    size = coarse_size(image_size, upsample)
    if tone_wanted(name, tone, channels):
        kwargs["tone"] = True
    generator = _REGISTRY[name](latent_dim=latent_dim, image_size=size, channels=channels, **kwargs)
    return Upsampled(generator, upsample) if upsample > 1 else generator
