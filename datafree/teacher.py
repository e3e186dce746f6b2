"""The teacher as an interface: "give me logits and the features I asked for, for this batch".

``Teacher`` wraps one frozen network. Anything with the same ``forward(x) -> NetOutput`` and
``feature_names`` can stand in its place (an ensemble of teachers for FEED, a schedule of route
checkpoints for RCO) without the trainer changing.
"""

from __future__ import annotations

import torch
from torch import nn

from datafree.features import FeatureTaps, NetOutput, penultimate_tap


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: the teacher is a fixed discriminator, never trained."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Teacher(nn.Module):
    """A frozen network plus forward hooks on the layers the generator objective and the losses need."""

    def __init__(self, net: nn.Module, taps: list[str] | tuple[str, ...] = (), feature_layer: str | None = None):
        super().__init__()
        self.net = freeze(net)
        self.feature_layer = feature_layer or penultimate_tap(net)
        self.feature_names = list(dict.fromkeys([self.feature_layer, *taps]))
        self._taps = FeatureTaps(self.net, self.feature_names)
        self.feature_stats: dict = {}  # {tap: (mean, var)} on the training data, for synthesis.feature_stats
        self.class_feature_stats: dict = {}  # {tap: (mean, var)} as (classes, channels), synthesis.class_feature_stats

    def train(self, mode: bool = True) -> "Teacher":
        """Stay in eval mode whatever the caller asks: BN statistics of a teacher never move."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> NetOutput:
        return self._taps.run(x)

    @property
    def penultimate(self) -> str:
        return self.feature_layer
