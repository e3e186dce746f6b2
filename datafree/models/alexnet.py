"""AlexNet teacher and half-width student for 64x64 CelebA attributes (DAFL, Chen et al., ICCV 2019, Sec. 4).

The paper names the networks ("AlexNet" and "AlexNet-half", half the filters) but not their layer sizes at
64x64; the layout below is our adaptation. The ImageNet 11x11 stride-4 stem would shrink a 64x64 image to
almost nothing, so conv1 is 5x5 stride 2; BatchNorm follows every conv so the nets train from scratch.
Shapes at 64x64 (full width): conv1 64@32x32 -> pool1 16x16 -> conv2 192@16x16 -> pool2 8x8 ->
conv3 384, conv4 256, conv5 256 @8x8 -> pool5 4x4 -> 4096-d -> fc6 2048 -> fc7 2048 -> fc8 num_classes.
"""

from __future__ import annotations

import torch
from torch import nn

from datafree.models.registry import register_model


class AlexNet64(nn.Module):
    """Five conv blocks and three fc layers, AlexNet's shape scaled to 64x64 inputs; every activation is tappable."""

    feature_layer = "relu7"  # output of fc7 after ReLU = the input of the classifier fc8
    default_taps = ("relu1", "relu2", "relu5")  # last conv output at each spatial resolution (32, 16, 8 at 64 px)

    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (64, 192, 384, 256, 256, 2048), dropout: float = 0.5):
        super().__init__()
        c1, c2, c3, c4, c5, f = widths
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=5, stride=2, padding=2)  # 64 -> 32
        self.bn1 = nn.BatchNorm2d(c1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)  # 32 -> 16
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5, padding=2)
        self.bn2 = nn.BatchNorm2d(c2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)  # 16 -> 8
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=3, padding=1)
        self.bn3 = nn.BatchNorm2d(c3)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(c3, c4, kernel_size=3, padding=1)
        self.bn4 = nn.BatchNorm2d(c4)
        self.relu4 = nn.ReLU()
        self.conv5 = nn.Conv2d(c4, c5, kernel_size=3, padding=1)
        self.bn5 = nn.BatchNorm2d(c5)
        self.relu5 = nn.ReLU()
        self.pool5 = nn.MaxPool2d(2)  # 8 -> 4
        self.avgpool = nn.AdaptiveAvgPool2d(4)  # identity at 64 px; lets other input sizes reach the fc layers
        self.flatten = nn.Flatten()
        self.drop6 = nn.Dropout(dropout)
        self.fc6 = nn.Linear(c5 * 4 * 4, f)
        self.relu6 = nn.ReLU()
        self.drop7 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(f, f)
        self.relu7 = nn.ReLU()
        self.fc8 = nn.Linear(f, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.relu4(self.bn4(self.conv4(x)))
        x = self.pool5(self.relu5(self.bn5(self.conv5(x))))
        x = self.flatten(self.avgpool(x))
        x = self.relu6(self.fc6(self.drop6(x)))
        x = self.relu7(self.fc7(self.drop7(x)))
        return self.fc8(x)


@register_model("alexnet", image_size=64)
def alexnet(num_classes: int = 40, in_channels: int = 3) -> AlexNet64:
    """DAFL's CelebA teacher, adapted to 64x64 (widths 64-192-384-256-256 conv, 2048 fc)."""
    return AlexNet64(num_classes, in_channels, widths=(64, 192, 384, 256, 256, 2048))


@register_model("alexnet_half", image_size=64)
def alexnet_half(num_classes: int = 40, in_channels: int = 3) -> AlexNet64:
    """DAFL's CelebA student: the teacher with every conv and fc layer half as wide."""
    return AlexNet64(num_classes, in_channels, widths=(32, 96, 192, 128, 128, 1024))
