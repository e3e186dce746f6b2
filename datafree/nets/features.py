"""Capture named intermediate features with forward hooks, so no model needs a special forward signature.

A tap name is a module path as given by ``model.named_modules()`` (e.g. ``"layer2"``, ``"features.3"``).
By default a tap records the module's *output*; the suffix ``":input"`` records its first input instead
(``"fc2:input"`` is the penultimate feature of a network whose classifier is ``fc2``).

Every tapped feature has its channels second, as a conv map ``(N, C, H, W)`` does: a token tensor ``(N, T, C)``
(the input or output of a LayerNorm, a Linear or a transformer block) is handed on as the view ``(N, C, T)``, so
per-channel statistics and priors are per feature over images x tokens, as they are per channel over images x
positions for a map. Only the 1-d layers that already put channels second (Conv1d, BatchNorm1d, GroupNorm,
InstanceNorm1d, 1-d pooling) are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

INPUT_SUFFIX = ":input"
# 1-d layers whose 3-d inputs and outputs already have channels second, (N, C, L): not token tensors
CHANNELS_SECOND_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.GroupNorm, nn.InstanceNorm1d, nn.MaxPool1d,
                      nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)  # fmt: skip


@dataclass
class NetOutput:
    """What a network produced for one batch: logits and the tapped features by name."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)

    def detach(self) -> "NetOutput":
        return NetOutput(self.logits.detach(), {k: v.detach() for k, v in self.features.items()})

    def float(self) -> "NetOutput":
        """float32 copies (of a bf16 forward's output): the losses compute in float32."""
        return NetOutput(self.logits.float(), {k: v.float() for k, v in self.features.items()})


def logits_of(output: object) -> torch.Tensor:
    """A classifier's logits from whatever its forward returns: a tensor; a dict or an object with ``logits`` (every
    Hugging Face ``transformers`` classifier's ``ModelOutput``, timm's and torchvision's plain tensors); a tuple or
    list whose first element is a tensor (``return_dict=False``, torchvision's Inception / GoogLeNet in training
    mode). Anything else is a TypeError naming what the network returned."""
    if isinstance(output, torch.Tensor):
        return output
    logits = output.get("logits") if isinstance(output, dict) else getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    kind = type(output).__name__
    keys = f" with keys {sorted(output)}" if isinstance(output, dict) else ""
    raise TypeError(f"the network returned a {kind}{keys}, not logits: its forward must return a tensor (N, K), an "
                    "object or dict with a `logits` tensor, or a tuple whose first element is the logits; wrap it "
                    "in an nn.Module whose forward returns the logits")  # fmt: skip


class _ImageMoments(torch.autograd.Function):
    """Spatial means of x and x^2 with a one-pass backward: dL/dx = (g1 + 2 g2 x) / (H W) in ONE fused op.

    Autograd's own backward of ``x.mean(space), (x * x).mean(space)`` expands each (N, C) gradient over the
    map, divides it, and multiplies it by x twice: five full-map passes per tap whose mixed layouts (an
    expanded gradient against a channels-last feature) run 4-8x slower than this one: the zoo's ResNet-20 step
    1,023-1,032 -> 934-939 ms (``runs/bench_speed.py --recipe zoo --teacher.arch resnet20 --student.arch
    resnet8_narrow --modes cl --batches 64 --threads 1``, one core). Same values to float32 rounding.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = features.float()
        space = tuple(range(2, value.dim()))
        ctx.save_for_backward(features)
        return value.mean(space), (value * value).mean(space)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_first: torch.Tensor | None, grad_second: torch.Tensor | None) -> torch.Tensor:
        (features,) = ctx.saved_tensors
        value = features.float()
        size = value[0, 0].numel()
        rows = (value.shape[0], value.shape[1]) + (1,) * (value.dim() - 2)
        zeros = value.new_zeros(value.shape[:2])
        first = (zeros if grad_first is None else grad_first) / size
        second = (zeros if grad_second is None else grad_second) * (2.0 / size)
        return torch.addcmul(first.view(rows), second.view(rows), value).to(features.dtype)


def image_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image spatial means of x and of x^2 of an (N, C, ...) tensor, (N, C) each, in float32.

    Every pooled or per-class moment over images x space is an average of these rows (all images share H x W),
    so the generator's statistics terms compute them once per batch and tap (:meth:`SynthBatch.image_moments`).
    """
    if features.dim() > 2:
        return _ImageMoments.apply(features)
    value = features.float()
    return value, value * value


def pooled_moments(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and biased variance over batch and space from :func:`image_moments`' rows:
    E[x] and E[x^2] - E[x]^2 (clamped at 0; float32 cancellation is ~1e-7 of E[x]^2, far below any prior's scale)."""
    mean = first.mean(dim=0)
    return mean, (second.mean(dim=0) - mean * mean).clamp_min(0)


def channel_moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance over batch and space of an (N, C, ...) tensor."""
    flat = features.float().transpose(0, 1).flatten(1)  # (C, N * H * W)
    return flat.mean(dim=1), flat.var(dim=1, unbiased=False)


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP / torch.compile wrappers so module paths match the user's own model."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, nn.Module) and not model._modules.keys() - {"module"}:
            model = model.module
        else:
            return model


def last_linear_input(model: nn.Module) -> str:
    """Tap name of the penultimate feature of an arbitrary classifier: the input of its last ``nn.Linear``; without
    one, the input of its last convolution (the head conv of an all-convolutional classifier, which maps the
    features to K class maps that a global pooling then averages: All-CNN, NiN, SqueezeNet).

    Modules are taken in registration order, which is the forward's order in every network we know of; a network
    whose classifier is neither (a functional matmul) names its layer with ``feature_layer``."""
    modules = list(_unwrap(model).named_modules())
    linears = [name for name, module in modules if isinstance(module, nn.Linear)]
    convs = [name for name, module in modules if isinstance(module, nn.modules.conv._ConvNd)]
    if not linears and not convs:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear or convolution, so its penultimate feature cannot be found "
            "automatically; pass feature_layer='<module path>' (see `python -m datafree.models <name>`)."
        )
    return (linears or convs)[-1] + INPUT_SUFFIX


def penultimate_tap(model: nn.Module) -> str:
    """The model's declared ``feature_layer`` if it has one, else the input of its last linear layer (of its head
    conv where it has no linear layer: :func:`last_linear_input`)."""
    declared = getattr(_unwrap(model), "feature_layer", None)
    return declared if declared else last_linear_input(model)


def list_layers(model: nn.Module) -> list[str]:
    """Every tappable module path of a model (the root itself excluded)."""
    return [name for name, _ in _unwrap(model).named_modules() if name]


class FeatureTaps:
    """Forward hooks on named layers of a model; ``run(x)`` returns logits plus those features.

    The hooks live as long as this object; the model's forward is called untouched, so it works on any
    ``nn.Module`` and inside DDP (the hooks sit on the inner modules).
    """

    def __init__(self, model: nn.Module, names: list[str] | tuple[str, ...]):
        self.model = model
        self.names = list(dict.fromkeys(names))
        self._store: dict[str, torch.Tensor] = {}
        self._handles = []
        inner = _unwrap(model)
        known = dict(inner.named_modules())
        for name in self.names:
            path, wants_input = (name[: -len(INPUT_SUFFIX)], True) if name.endswith(INPUT_SUFFIX) else (name, False)
            if path not in known or not path:
                raise ValueError(
                    f"{type(inner).__name__} has no layer named {path!r}. Known layers: "
                    f"{', '.join(list_layers(inner)[:40])}{' ...' if len(known) > 41 else ''}. "
                    "List them all with `python -m datafree.models <name>` or datafree.nets.features.list_layers(model)."
                )
            self._handles.append(known[path].register_forward_hook(self._hook(name, wants_input, known[path])))

    def _hook(self, name: str, wants_input: bool, module: nn.Module):
        tokens = not isinstance(module, CHANNELS_SECOND_1D)

        def hook(module, inputs, output):
            value = inputs[0] if wants_input else output
            if tokens and isinstance(value, torch.Tensor) and value.dim() == 3:
                value = value.transpose(1, 2)  # (N, T, C) tokens -> (N, C, T): channels second, as a conv map's
            self._store[name] = value

        return hook

    def run(self, x: torch.Tensor, *args, **kwargs) -> NetOutput:
        self._store = {}
        logits = logits_of(self.model(x, *args, **kwargs))
        features, self._store = self._store, {}
        missing = [n for n in self.names if n not in features]
        if missing:
            raise RuntimeError(f"layers {missing} were not called during forward; tap layers the forward actually uses")
        return NetOutput(logits, features)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
