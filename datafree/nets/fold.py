"""A copy of a frozen network with its BatchNorm layers folded into the layers before them, for no-grad forwards.

In eval mode a BatchNorm layer is a fixed affine map per channel, y = gamma (x - mu) / sqrt(var + eps) + beta.
After a convolution or linear layer it folds into that layer: W' = W s, b' = (b - mu) s + beta with
s = gamma / sqrt(var + eps) per output channel. The folded copy computes the same function up to float
rounding with one pass less over every feature map. The loop uses it for the forwards that only label the
student's batches (datafree/batches/): a step of the zoo's ResNet-20 pair is 1.13x faster with it on one CPU
core, 1.52x with bf16 labels on top (docs/changelog.md; runs/bench_speed.py). The generator's forward
keeps the BatchNorm layers, whose inputs the statistics terms read.

The fold is torch.fx's (``torch.fx.experimental.optimization.fuse``: conv/linear followed by BatchNorm, when
nothing else reads the conv's output). A network fx cannot trace, one with nothing to fold, or a copy whose logits
differ from the network's on a probe batch gives None: the caller keeps the network itself.

``taps`` (feature tap names, datafree/nets/features.py) must give the same values on the copy. The trace keeps each
tapped module whole (a leaf: its hook fires, nothing inside it is folded) and fx keeps the module paths, but a
fused conv's output is its BatchNorm's output and a folded BatchNorm is gone, so each tap is compared on the probe
like the logits, and a tap the copy lacks or computes differently gives None too.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from datafree.nets.features import INPUT_SUFFIX, FeatureTaps
from datafree.nets.netcheck import memory_format_of

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def count_batchnorms(net: nn.Module) -> int:
    return sum(isinstance(m, _BATCHNORMS) for m in net.modules())


def without_hooks(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` with no hooks (a copy would otherwise write into the original's feature taps)."""
    twin = copy.deepcopy(net)
    for module in twin.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):  # fmt: skip
            hooks = getattr(module, name, None)
            if hooks is not None:
                hooks.clear()
    return twin


@torch.no_grad()
def folded_copy(net: nn.Module, probe: torch.Tensor, rtol: float = 1e-4,
                taps: list[str] | tuple[str, ...] = ()) -> nn.Module | None:  # fmt: skip
    """``net`` (left untouched) as a frozen eval-mode copy with BatchNorm folded, or None where that cannot be done.

    ``probe`` is a small batch of the net's inputs; the copy must give the net's logits (and its ``taps``'
    features) on it within ``rtol`` of their largest magnitude (float rounding of the folded weights is ~1e-7 of it).
    """
    before = count_batchnorms(net)
    if before == 0:
        return None
    try:
        plain = without_hooks(net).eval()
        folded = fuse(plain, inplace=False) if not taps else fuse(_traced(plain, taps), inplace=True, no_trace=True)
    except Exception:  # noqa: BLE001 -- a copy or trace failure (dynamic control flow, custom modules): no fold
        return None
    if count_batchnorms(folded) == before:
        return None
    folded = folded.eval().requires_grad_(False).to(memory_format=memory_format_of(net))
    try:
        plain_taps, folded_taps = FeatureTaps(plain, taps), FeatureTaps(folded, taps)
    except ValueError:  # a tapped layer the fold removed (a BatchNorm)
        return None
    try:
        expected, got = plain_taps.run(probe), folded_taps.run(probe)
    except RuntimeError:  # a tapped layer the copy's forward does not call
        return None
    finally:
        plain_taps.remove()
        folded_taps.remove()
    pairs = [(expected.logits, got.logits), *((expected.features[n], got.features[n]) for n in taps)]
    return folded if all(_close(e, g, rtol) for e, g in pairs) else None


class _TapsAsLeaves(fx.Tracer):
    """fx's tracer, keeping the tapped modules as single calls (a traced-through container has no hook to fire)."""

    def __init__(self, paths: set[str]):
        super().__init__()
        self.paths = paths

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return qualified_name in self.paths or super().is_leaf_module(module, qualified_name)


def _traced(net: nn.Module, taps: list[str] | tuple[str, ...]) -> fx.GraphModule:
    paths = {name.removesuffix(INPUT_SUFFIX) for name in taps}
    return fx.GraphModule(net, _TapsAsLeaves(paths).trace(net), type(net).__name__)


def _close(expected: torch.Tensor, got: torch.Tensor, rtol: float) -> bool:
    """Same shape and within ``rtol`` of the expected tensor's largest magnitude, elementwise."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return False
    scale = expected.abs().max().clamp_min(1e-12)
    return torch.allclose(got, expected, rtol=0.0, atol=float(rtol * scale))
