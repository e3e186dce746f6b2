"""``python -m datafree.models [name]``: list models, or a model's tappable layers with their output shapes.

Use it to pick ``feature_layer`` / tap names for distillation losses without reading model code.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from datafree.nets.features import INPUT_SUFFIX, list_layers
from datafree.models import create_model, list_models
from datafree.models.registry import get_entry


def count_params(model: nn.Module) -> int:
    """Total number of parameters, the usual size measure of teacher/student pairs."""
    return sum(p.numel() for p in model.parameters())


def _shape(value: object) -> str:
    """Per-sample shape of a hook value (batch dim dropped); non-tensor outputs are shown by type."""
    if isinstance(value, torch.Tensor):
        return "x".join(str(d) for d in value.shape[1:]) or "scalar"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_shape(v) for v in value) + ")"
    return type(value).__name__


def layer_shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[str, str]]:
    """One dummy forward with hooks on every layer: name -> (input shape, output shape); unused layers are absent."""
    found: dict[str, tuple[str, str]] = {}
    modules = dict(model.named_modules())
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output) -> None:  # must return None, or the hook would replace the output
            found.setdefault(name, (_shape(inputs[0]) if inputs else "-", _shape(output)))

        return hook

    for name in list_layers(model):
        handles.append(modules[name].register_forward_hook(make_hook(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return found


def print_models(num_classes: int) -> None:
    """Table of every registered model with its natural input and parameter count."""
    rows = []
    for name in list_models():
        entry = get_entry(name)
        model = create_model(name, num_classes=num_classes, in_channels=entry.in_channels)
        rows.append((name, f"{entry.in_channels}x{entry.image_size}x{entry.image_size}", f"{count_params(model):,}", model.feature_layer))
    header = ("model", "input", f"params ({num_classes} classes)", "feature_layer")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}")
    print("\nShow a model's layers: python -m datafree.models <name> [--num-classes N] [--in-channels C] [--image-size S]")


def print_layers(name: str, num_classes: int, in_channels: int | None, image_size: int | None) -> None:
    """Every tappable layer of one model with its per-sample output shape, marking default taps and feature_layer."""
    entry = get_entry(name)
    in_channels = entry.in_channels if in_channels is None else in_channels
    image_size = entry.image_size if image_size is None else image_size
    model = create_model(name, num_classes=num_classes, in_channels=in_channels).eval()
    shapes = layer_shapes(model, torch.zeros(2, in_channels, image_size, image_size))
    feature = model.feature_layer
    feature_path = feature[: -len(INPUT_SUFFIX)] if feature.endswith(INPUT_SUFFIX) else feature
    modules = dict(model.named_modules())
    rows = []
    for layer in list_layers(model):
        marks = []
        if layer in model.default_taps:
            marks.append("default tap")
        if layer == feature:
            marks.append("feature_layer")
        if layer == feature_path and feature != layer:
            marks.append(f"feature_layer = its input ({shapes.get(layer, ('?', ''))[0]})")
        out = shapes[layer][1] if layer in shapes else "(not called)"
        rows.append(("  " * layer.count(".") + layer, type(modules[layer]).__name__, out, ", ".join(marks)))
    print(f"{name}: {count_params(model):,} parameters, input {in_channels}x{image_size}x{image_size}, {num_classes} classes")
    print(f"feature_layer = {feature!r}; default_taps = {model.default_taps!r}\n")
    header = ("layer", "type", "output (per sample)", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datafree.models", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="model to inspect; omit to list all models")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--in-channels", type=int, default=None, help="default: the model's natural input (1 for LeNets)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 32, or 64 for the CelebA AlexNets")
    parser.add_argument("--layers", action="store_true", help="accepted for compatibility; layers are shown whenever a name is given")
    args = parser.parse_args(argv)
    if args.name is None:
        print_models(args.num_classes)
        return
    try:
        print_layers(args.name, args.num_classes, args.in_channels, args.image_size)
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
