"""One registry type for every "method by name" table: losses, synthesis terms, teacher kinds, student wrappers.

``registry.register("name")`` is a class decorator that files the class under ``name`` and sets its
``registry_name``; ``registry.create("name", **params)`` builds it, and an unknown name or parameter is a
ValueError that lists what exists.
"""

from __future__ import annotations

import inspect
from typing import Callable


class Registry:
    def __init__(self, what: str, plural: str):
        self.what, self.plural = what, plural  # e.g. "distillation loss", "losses"
        self._classes: dict[str, type] = {}

    def register(self, name: str, **attributes) -> Callable[[type], type]:
        """Class decorator; ``attributes`` are set on the class too (e.g. a term's log name)."""

        def add(cls: type) -> type:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._classes[name] = cls
            cls.registry_name = name
            for key, value in attributes.items():
                setattr(cls, key, value)
            return cls

        return add

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type:
        if name not in self._classes:
            raise ValueError(f"unknown {self.what} {name!r}; registered {self.plural}: {', '.join(self.names())}")
        return self._classes[name]

    def create_list(self, pieces: list[tuple[str, dict]], where: str) -> list:
        """A recipe's list of (name, params), each built; a name given twice, an unknown name or a parameter a
        class does not take is a ConfigError that names the list (``where``, e.g. ``[[batches]]``)."""
        from datafree.config import ConfigError

        names = [name for name, _ in pieces]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"{where} lists {twice} more than once; give each once")
        built = []
        for name, params in pieces:
            try:
                cls = self.get(name)
            except ValueError as err:
                raise ConfigError(f"{where} {err}") from None
            try:
                built.append(cls(**params))
            except TypeError as err:
                raise ConfigError(f"{where} {name!r}: bad params {params} ({err})") from None
        return built

    def create(self, name: str, **params):
        """Build a registered class; a parameter it does not take fails with the ones it accepts."""
        cls = self.get(name)
        try:
            return cls(**params)
        except TypeError as err:
            accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            raise ValueError(f"bad parameters {params} for {self.what} {name!r} ({err}); it accepts: {accepted}") from None
