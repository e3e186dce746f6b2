"""Name -> generator factory. Every factory takes (latent_dim, image_size, channels, **recipe knobs)."""

from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_generator(name: str):
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return add


def list_generators() -> list[str]:
    return sorted(_REGISTRY)


def create_generator(name: str, latent_dim: int, image_size: int, channels: int, **kwargs) -> nn.Module:
    if name not in _REGISTRY:
        raise ValueError(f"unknown generator {name!r}; registered generators: {', '.join(list_generators())}")
    return _REGISTRY[name](latent_dim=latent_dim, image_size=image_size, channels=channels, **kwargs)
