"""CIFAR ResNet-18/34 (3x3 stem, no initial max-pool), the CIFAR teacher/student pair of DAFL."""

from __future__ import annotations

import torch
from torch import nn

from datafree.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a (projected when the shape changes) shortcut; ReLUs are modules so they can be tapped."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, inner: int | None = None):
        super().__init__()
        mid = inner or planes  # conv1's width: what a channel search changes (the residual width stays)
        self.conv1 = nn.Conv2d(in_planes, mid, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with 64-128-256-512 stages at strides 1-2-2-2; adaptive pooling makes any input >= 32 px work."""

    feature_layer = "flatten"  # 512-d pooled vector, the input of the linear classifier
    default_taps = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int = 10, in_channels: int = 3,
                 inner: list[int] | None = None):  # fmt: skip
        super().__init__()
        if inner is not None and len(inner) != sum(blocks):
            raise ValueError(f"inner: one width per block ({sum(blocks)}), got {len(inner)}")
        mids = list(inner) if inner is not None else [None] * sum(blocks)
        starts = [sum(blocks[:i]) for i in range(4)]
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(64, 64, blocks[0], 1, mids[starts[0]:starts[0] + blocks[0]])
        self.layer2 = self._make_layer(64, 128, blocks[1], 2, mids[starts[1]:starts[1] + blocks[1]])
        self.layer3 = self._make_layer(128, 256, blocks[2], 2, mids[starts[2]:starts[2] + blocks[2]])
        self.layer4 = self._make_layer(256, 512, blocks[3], 2, mids[starts[3]:starts[3] + blocks[3]])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(512, num_classes)

    @staticmethod
    def _make_layer(in_planes: int, planes: int, num_blocks: int, stride: int, inner: list) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride, inner[0])]
        layers += [BasicBlock(planes, planes, 1, inner[i]) for i in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def width_kwargs(self, widths: dict[str, int]) -> dict:
        """Factory kwargs with the given blocks' inner widths (``layer<s>.<b>.conv1``: a channel search's result)."""
        names = [f"layer{s}.{b}.conv1" for s in range(1, 5) for b in range(len(getattr(self, f"layer{s}")))]
        return {"inner": [int(widths.get(n, self.get_submodule(n).out_channels)) for n in names]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.flatten(self.avgpool(x))
        return self.linear(x)


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3, inner: list[int] | None = None) -> ResNet:
    """DAFL's CIFAR student (11.2M parameters for 10 classes); ``inner``: each block's conv1 width."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, inner)


@register_model("resnet34")
def resnet34(num_classes: int = 10, in_channels: int = 3, inner: list[int] | None = None) -> ResNet:
    """DAFL's CIFAR teacher (21.3M parameters for 10 classes); ``inner``: each block's conv1 width."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels, inner)
