"""LeNet-5 teacher and its half-width student, the MNIST networks of DAFL (Chen et al., ICCV 2019)."""

from __future__ import annotations

import torch
from torch import nn

from datafree.models.registry import register_model


class LeNet5(nn.Module):
    """Classic LeNet-5 on 32x32 inputs; every tappable activation is a named module so hooks can read it."""

    feature_layer = "flatten"  # the 120-d vector before the fc layers, as in the official DAFL code
    default_taps = ("relu1", "relu2", "relu3")
    stats_taps = ("conv1", "conv2", "conv3")  # where BatchNorm would sit: feature statistics are recorded here

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: tuple[int, int, int, int] = (6, 16, 120, 84)):
        super().__init__()
        c1, c2, c3, f1 = widths
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=5)  # 32 -> 28
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)  # 28 -> 14
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5)  # 14 -> 10
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)  # 10 -> 5
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=5)  # 5 -> 1
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c3, f1)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(f1, num_classes)

    def width_kwargs(self, widths: dict[str, int]) -> dict:
        """Factory kwargs for this network with the given layers' output widths (a channel search's result)."""
        layers = ("conv1", "conv2", "conv3", "fc1")
        current = (self.conv1.out_channels, self.conv2.out_channels, self.conv3.out_channels, self.fc1.out_features)
        return {"widths": [int(widths.get(name, c)) for name, c in zip(layers, current)]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(self.relu3(self.conv3(x)))
        x = self.relu4(self.fc1(x))
        return self.fc2(x)


@register_model("lenet5", in_channels=1)
def lenet5(num_classes: int = 10, in_channels: int = 1, widths=(6, 16, 120, 84)) -> LeNet5:
    """DAFL's MNIST teacher: 61,706 parameters for 1 channel and 10 classes (``widths``: conv1-3, fc1 outputs)."""
    return LeNet5(num_classes, in_channels, widths=tuple(widths))


@register_model("lenet5_half", in_channels=1)
def lenet5_half(num_classes: int = 10, in_channels: int = 1, widths=(3, 8, 60, 42)) -> LeNet5:
    """DAFL's MNIST student, every layer half as wide: 15,738 parameters for 1 channel and 10 classes."""
    return LeNet5(num_classes, in_channels, widths=tuple(widths))
