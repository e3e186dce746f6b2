"""Generator architectures, found by name: ``create_generator("dafl", latent_dim=100, ...)``."""

from generators.registry import create_generator, list_generators, register_generator
from generators import dafl, staged  # noqa: F401  (registers "dafl", "staged", "auto")

__all__ = ["create_generator", "list_generators", "register_generator"]
