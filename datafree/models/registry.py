"""Model registry: networks are found by name so configs and CLIs never import model classes directly."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from torch import nn

from datafree.nets.features import INPUT_SUFFIX, last_linear_input
from datafree.models.hub import create_hub_model, is_hub_name

ModelFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered factory plus the input it was designed for (used by the CLI's dummy forward)."""

    name: str
    factory: ModelFactory
    in_channels: int
    image_size: int


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, in_channels: int = 3, image_size: int = 32) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding ``factory(num_classes, in_channels) -> nn.Module`` to the registry under ``name``.

    ``in_channels`` / ``image_size`` only describe the model's natural input, for ``python -m datafree.models``.
    """

    def decorator(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered (by {_REGISTRY[name].factory.__module__})")
        _REGISTRY[name] = ModelEntry(name, factory, in_channels, image_size)
        return factory

    return decorator


def list_models() -> list[str]:
    """Registered model names, sorted, so users can discover what ``create_model`` accepts."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; a ValueError listing every known name otherwise."""
    if name not in _REGISTRY:
        if ":" in name:
            from datafree.models.hub import SOURCES

            raise ValueError(f"unknown model source in {name!r}; sources: {', '.join(f'{p}:' for p in sorted(SOURCES))}")
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build a registered model; guarantees the ``feature_layer`` / ``default_taps`` attributes callers rely on.

    Keyword arguments go to the model's factory (e.g. widths found by a search), so a shape written as
    ``{name, **kwargs}`` rebuilds the same network by name; the model records it as ``model.model_spec``
    (``{arch, num_classes, in_channels, kwargs}``, what :func:`model_from_spec` takes).
    """
    try:
        if is_hub_name(name):  # torchvision:<name>, timm:<name>, hf:<folder> (datafree/models/hub.py)
            model = create_hub_model(name, num_classes, in_channels, **kwargs)
        else:
            model = get_entry(name).factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
    except TypeError as err:
        if not kwargs:
            raise
        raise ValueError(f"model {name!r} does not take {sorted(kwargs)}: {err}") from None
    model.model_spec = {"arch": name, "num_classes": num_classes, "in_channels": in_channels, "kwargs": dict(kwargs)}
    # Models registered by users may not declare taps: fall back to the paper's choice (input of the last fc).
    if not getattr(model, "feature_layer", None):
        model.feature_layer = last_linear_input(model)
    if getattr(model, "default_taps", None) is None:
        model.default_taps = ()
    model.default_taps = tuple(model.default_taps)
    # A typo in a declared tap would otherwise only surface deep inside a training run.
    known = {path for path, _ in model.named_modules() if path}
    for tap in (model.feature_layer, *model.default_taps):
        path = tap[: -len(INPUT_SUFFIX)] if tap.endswith(INPUT_SUFFIX) else tap
        if path not in known:
            raise ValueError(f"model {name!r} declares tap {tap!r} but has no submodule {path!r}")
    return model


def model_from_spec(spec: dict) -> nn.Module:
    """``create_model`` from a ``{arch, num_classes, in_channels, kwargs}`` dict (e.g. a search's architecture.json)."""
    missing = [k for k in ("arch", "num_classes", "in_channels") if k not in spec]
    if missing:
        raise ValueError(f"architecture description lacks {missing}; it needs arch, num_classes, in_channels, kwargs")
    return create_model(spec["arch"], int(spec["num_classes"]), int(spec["in_channels"]), **dict(spec.get("kwargs") or {}))
