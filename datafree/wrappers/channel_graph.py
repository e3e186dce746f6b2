"""Which output channels of a network can carry a gate, and their structural removal, on torch-pruning's graph.

torch-pruning (Fang et al., "DepGraph", CVPR 2023) traces a network once and knows, for every layer's output
channels, which other parameters are coupled to them: the BatchNorm that normalises them, the next layers'
input channels (through ReLU, pooling, flatten, concatenation), and the other layers whose outputs are added
to them (residual connections). We use it twice:

- ``gate_sites``: a conv / linear layer is gated when its output channels are coupled to nothing but its own
  BatchNorm (directly after it) and the input channels of the layers that consume them. Then a channel whose
  gate is 0 outputs exactly 0 (the gate multiplies the BatchNorm's output, or the layer's own when no BatchNorm
  follows), and removing it with its consumers' input slices changes no output. Channels tied by an addition
  (a ResNet's residual stream: the stem, every block's last conv, the projection shortcuts) are NOT gated:
  the residual choice of network slimming (Liu et al. 2017), only each block's inner channels are searched.
  Grouped / depthwise convs, the logits layer and layers whose channels pass through anything else before
  being consumed are not gated either; each left-out layer gets its reason.
- ``remove_channels``: the closed channels go, through torch-pruning's dependency groups (no per-architecture
  surgery). A layer whose every gate closed keeps one (zeroed) channel, so it still produces a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn


@dataclass
class GateSite:
    """A gated layer: its output channels, where the gate multiplies, and who reads those channels."""

    layer: str  # the conv / linear whose output channels are gated
    gated_module: str  # where the gate multiplies the output: ``layer`` or the BatchNorm right after it
    channels: int
    consumers: dict[str, int] = field(default_factory=dict)  # consumer layer -> its input features per channel


def _out_fn(module: nn.Module):
    return tp.prune_conv_out_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_out_channels


def dependency_graph(net: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    """torch-pruning's graph of ``net``, traced in eval mode (BatchNorm statistics untouched), mode restored."""
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(net, example_inputs=example, verbose=False)
    finally:
        net.train(was_training)


def gate_sites(net: nn.Module, example: torch.Tensor) -> tuple[list[GateSite], dict[str, str]]:
    """Gateable layers (module order) and, for every other conv / linear layer, why it is not gated."""
    graph = dependency_graph(net, example)
    names = {module: name for name, module in net.named_modules()}
    sites, skipped = [], {}
    for name, module in net.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            skipped[name] = f"grouped conv (groups={module.groups}): its channels are tied to its input's"
            continue
        if module not in graph.module2node:
            skipped[name] = "not reached by the forward pass"
            continue
        successors = [node.module for node in graph.module2node[module].outputs]
        consumers, bn, tied, other = {}, None, [], []
        for dep, idxs in graph.get_pruning_group(module, _out_fn(module), [0]):
            target = dep.target.module
            if target is module or target not in names:  # the layer itself, or torch-pruning's own op nodes
                continue
            out, into = graph.is_out_channel_pruning_fn(dep.handler), graph.is_in_channel_pruning_fn(dep.handler)
            if isinstance(target, (nn.Conv2d, nn.Linear)) and into and not out:
                consumers[names[target]] = len(idxs)
            elif isinstance(target, nn.BatchNorm2d) and successors == [target] and bn is None:
                bn = target
            elif isinstance(target, (nn.Conv2d, nn.Linear)):
                tied.append(names[target])
            else:
                other.append(f"{names[target]} ({type(target).__name__})")
        if tied:
            skipped[name] = (f"its channels are added to (tied with) those of {sorted(set(tied))}: residual channels are "
                             "not gated, only the inner channels of each block (as network slimming does)")  # fmt: skip
        elif other:
            skipped[name] = f"its channels also pass through {other}, which a gate cannot be folded through"
        elif not consumers:
            skipped[name] = "it produces the network's output (the logits)"
        else:
            channels = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
            sites.append(GateSite(name, names[bn] if bn is not None else name, channels, consumers))
    return sites, skipped


@torch.no_grad()
def remove_channels(net: nn.Module, example: torch.Tensor, closed: dict[str, list[int]]) -> dict[str, int]:
    """Remove each layer's ``closed`` output channels (and everything coupled to them) in place; the new widths."""
    graph = dependency_graph(net, example)
    widths = {}
    for name, idxs in closed.items():
        module = net.get_submodule(name)
        channels = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        idxs = sorted(set(int(i) for i in idxs))
        if len(idxs) >= channels:  # keep one (zeroed) channel: a layer of width 0 is no layer
            idxs = idxs[1:]
        if idxs:
            with torch.enable_grad():
                graph.get_pruning_group(module, _out_fn(module), idxs).prune()
        widths[name] = channels - len(idxs)
    return widths
