"""FLOPs of conv and linear layers, counted on one forward, and what they become when channels are removed.

Convention (the one of most pruning papers, and of the channel-gate search): **FLOPs = multiply-accumulates
of the conv and linear weights for one image**. Biases, BatchNorm, activations and pooling are not counted.

    conv:   MACs = (C_out * H_out * W_out) * (C_in / groups) * k_h * k_w
    linear: MACs = C_in * C_out * (number of vectors per image, 1 for a plain classifier)

A layer with ``c_in`` of its ``C_in`` input channels and ``c_out`` of its ``C_out`` output channels kept costs
MACs * (c_in / C_in) * (c_out / C_out) (exact for groups = 1, which is all the search gates).
LeNet-5 (6-16-120-84) on 32x32 images: 416,520; LeNet-5-half: 133,740.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerCost:
    """One conv / linear layer at the widths it was traced with."""

    macs: int
    in_channels: int
    out_channels: int

    def at(self, kept_in: float, kept_out: float) -> float:
        """MACs with ``kept_in`` input and ``kept_out`` output channels (groups = 1)."""
        return self.macs * (kept_in / self.in_channels) * (kept_out / self.out_channels)


def _macs(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return int(output[0].numel() * (module.in_channels // module.groups) * kh * kw)
    vectors = inputs[0].numel() // module.in_features  # 1 for (N, C_in); T for (N, T, C_in)
    return int(vectors * module.in_features * module.out_features)


@torch.no_grad()
def layer_costs(net: nn.Module, example: torch.Tensor) -> dict[str, LayerCost]:
    """Per conv / linear layer (module path -> cost) for the image(s) in ``example``, counted for ONE image.

    The network's train/eval mode is kept (the forward runs in eval mode, so BatchNorm statistics do not move).
    """
    costs: dict[str, LayerCost] = {}
    handles = []
    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            def hook(m, args, out, name=name):
                channels = (m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d) else (m.in_features, m.out_features)
                costs[name] = LayerCost(_macs(m, args[0][:1], out[:1]), *channels)

            handles.append(module.register_forward_hook(hook))
    was_training = net.training
    net.eval()
    try:
        net(example[:1])
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    return costs


def total_macs(costs: dict[str, LayerCost]) -> int:
    return sum(cost.macs for cost in costs.values())


def count_macs(net: nn.Module, example: torch.Tensor) -> int:
    """FLOPs (conv + linear multiply-accumulates) of one image through ``net``."""
    return total_macs(layer_costs(net, example))


def parameter_count(module: nn.Module, recurse: bool = True) -> int:
    return sum(p.numel() for p in module.parameters(recurse=recurse))
