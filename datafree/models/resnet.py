"""CIFAR ResNet-18/34 (3x3 stem, no initial max-pool), the CIFAR teacher/student pair of DAFL."""

from __future__ import annotations

import torch
from torch import nn

from datafree.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a (projected when the shape changes) shortcut; ReLUs are modules so they can be tapped."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
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

    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(64, 64, blocks[0], stride=1)
        self.layer2 = self._make_layer(64, 128, blocks[1], stride=2)
        self.layer3 = self._make_layer(128, 256, blocks[2], stride=2)
        self.layer4 = self._make_layer(256, 512, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(512, num_classes)

    @staticmethod
    def _make_layer(in_planes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(num_blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.flatten(self.avgpool(x))
        return self.linear(x)


@register_model("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """DAFL's CIFAR student (11.2M parameters for 10 classes)."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels)


@register_model("resnet34")
def resnet34(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """DAFL's CIFAR teacher (21.3M parameters for 10 classes)."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels)
