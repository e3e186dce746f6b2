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


def create_generator(name: str, latent_dim: int, image_size: int, channels: int, upsample: int = 1,
                     **kwargs) -> nn.Module:  # fmt: skip
    """``upsample`` > 1: the generator built for ``image_size / upsample`` and enlarged (generators/upsampled.py)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown generator {name!r}; registered generators: {', '.join(list_generators())}")
    size = coarse_size(image_size, upsample)
    generator = _REGISTRY[name](latent_dim=latent_dim, image_size=size, channels=channels, **kwargs)
    return Upsampled(generator, upsample) if upsample > 1 else generator
