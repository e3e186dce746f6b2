"""The Fashion-MNIST teacher zoo: three more families beside LeNet-5, each a teacher and a student of its scale.

All three use BatchNorm (their running statistics are what DeepInversion-style priors read) and global
average pooling, so they take 28x28 and 32x32 inputs alike. Widths are keyword arguments, so a searched
shape rebuilds by name: ``create_model("vgg_bn", num_classes=10, in_channels=1, widths=(16, 32, 32, 64, 64))``.

| name | family | parameters (10 classes, 1 channel) |
|---|---|---|
| ``vgg_bn`` / ``vgg_bn_small`` | five 3x3 conv + BN + ReLU, max-pool after 1st/2nd/4th, GAP, hidden fc | 313K / 39K |
| ``resnet20`` / ``resnet8`` | CIFAR ResNet (He et al. 2016): 16-32-64 stages of 3 / 1 basic blocks | 272K / 78K |
| ``resnet8_narrow`` | the same at width 8-16-32 | 20K |
| ``resnet20_s2`` / ``resnet8_narrow_s2`` | the two above with a stride-2 stem, for 64-px inputs: the stages then run at 32 px | 272K / 20K |
| ``mobilenet_small`` / ``mobilenet_tiny`` | depthwise-separable blocks (MobileNet v1), width x2 / x1 | 141K / 38K |
| ``mobilenet_small_s2`` / ``mobilenet_tiny_s2`` | the two above with a stride-2 stem, for 64-px inputs | 141K / 38K |
"""

from __future__ import annotations

import torch
from torch import nn

from datafree.models.registry import register_model


def conv_bn(c_in: int, c_out: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())  # fmt: skip


class VGGBN(nn.Module):
    """conv_bn x5 (max-pool after the 1st, 2nd and 4th), global average pooling, fc-ReLU-fc."""

    feature_layer = "head.2"  # the hidden fc's ReLU: the penultimate feature
    default_taps = ("features.1", "features.3", "features.6")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 64, 128, 128), hidden: int = 256):
        super().__init__()
        w = list(widths)
        self.features = nn.Sequential(conv_bn(in_channels, w[0]), nn.MaxPool2d(2), conv_bn(w[0], w[1]), nn.MaxPool2d(2),
                                      conv_bn(w[1], w[2]), conv_bn(w[2], w[3]), nn.MaxPool2d(2), conv_bn(w[3], w[4]))  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Sequential(nn.Linear(w[4], hidden), nn.ReLU()),
                                  nn.Linear(hidden, num_classes))  # fmt: skip

    def width_kwargs(self, widths: dict[str, int]) -> dict:
        """Factory kwargs for this network with the given layers' output widths (a channel search's result)."""
        convs = [f"features.{i}.0" for i in (0, 2, 4, 5, 7)]
        current = [self.get_submodule(n).out_channels for n in convs]
        return {"widths": [int(widths.get(n, c)) for n, c in zip(convs, current)],
                "hidden": int(widths.get("head.2.0", self.head[2][0].out_features))}  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Block(nn.Module):
    """Basic residual block (two 3x3 conv + BN), projection shortcut when the shape changes; ``inner``: the
    first conv's width (default ``c_out``), what a channel search changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, inner: int | None = None):
        super().__init__()
        mid = inner or c_out
        self.conv = nn.Sequential(conv_bn(c_in, mid, stride),
                                  nn.Conv2d(mid, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))  # fmt: skip
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))  # fmt: skip
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 stem, three stages of ``blocks`` basic blocks at widths w, 2w, 4w (strides 1, 2, 2), GAP, fc.

    ``stem_stride = 2`` halves the image in the stem, as networks built for larger images do (ImageNet ResNets
    by a strided 7x7 conv and a max-pool): at 64 px the stages then cost what they cost at 32 px, a quarter of
    the stride-1 layout's compute."""

    feature_layer = "flatten"
    default_taps = ("stage1", "stage2", "stage3")

    def __init__(self, blocks: int, num_classes: int = 10, in_channels: int = 1, width: int = 16,
                 inner: list[int] | None = None, stem_stride: int = 1):  # fmt: skip
        super().__init__()
        w = (width, 2 * width, 4 * width)
        if inner is not None and len(inner) != 3 * blocks:
            raise ValueError(f"inner: one width per block ({3 * blocks}), got {len(inner)}")
        self.stem = conv_bn(in_channels, w[0], stem_stride)
        stages, c_in = [], w[0]
        for i, c_out in enumerate(w):
            stages.append(nn.Sequential(*[Block(c_in if j == 0 else c_out, c_out, 2 if i and j == 0 else 1,
                                                inner[i * blocks + j] if inner else None)
                                          for j in range(blocks)]))  # fmt: skip
            c_in = c_out
        self.stage1, self.stage2, self.stage3 = stages
        self.pool, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w[2], num_classes)

    def width_kwargs(self, widths: dict[str, int]) -> dict:
        """Factory kwargs with the given blocks' inner widths (``stage<s>.<b>.conv.0.0``: a search's result)."""
        names = [f"{s}.{b}.conv.0.0" for s in ("stage1", "stage2", "stage3") for b in range(len(self.stage1))]
        return {"inner": [int(widths.get(n, self.get_submodule(n).out_channels)) for n in names]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


class MobileNetV1(nn.Module):
    """Stem conv, then depthwise 3x3 + pointwise 1x1 blocks (each conv + BN + ReLU), GAP, fc."""

    feature_layer = "flatten"
    default_taps = ("blocks.1", "blocks.3", "blocks.5")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0, stem_stride: int = 1):
        super().__init__()
        plan = [(32, 1), (32, 2), (64, 1), (64, 2), (128, 1), (128, 2)]  # (output channels, stride) per block
        c = lambda n: max(8, int(n * width_mult))  # noqa: E731
        self.stem = conv_bn(in_channels, c(16), stem_stride)
        blocks, c_in = [], c(16)
        for c_out, stride in plan:
            blocks.append(nn.Sequential(conv_bn(c_in, c_in, stride, groups=c_in), conv_bn(c_in, c(c_out), kernel=1)))
            c_in = c(c_out)
        self.blocks = nn.Sequential(*blocks)
        self.pool, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))


@register_model("mobilenet_small_s2", in_channels=3, image_size=64)
def mobilenet_small_s2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 2.0) -> MobileNetV1:
    """MobileNet-small with a stride-2 stem: a second 64-px teacher of another family than ``resnet20_s2``."""
    return MobileNetV1(num_classes, in_channels, width_mult, stem_stride=2)


@register_model("mobilenet_tiny_s2", in_channels=3, image_size=64)
def mobilenet_tiny_s2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> MobileNetV1:
    """MobileNet-tiny with a stride-2 stem: the student of ``mobilenet_small_s2``."""
    return MobileNetV1(num_classes, in_channels, width_mult, stem_stride=2)


@register_model("vgg_bn", in_channels=1, image_size=28)
def vgg_bn(num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 64, 128, 128), hidden: int = 256) -> VGGBN:
    return VGGBN(num_classes, in_channels, widths, hidden)


@register_model("vgg_bn_small", in_channels=1, image_size=28)
def vgg_bn_small(num_classes: int = 10, in_channels: int = 1, widths=(8, 16, 32, 32, 64), hidden: int = 64) -> VGGBN:
    return VGGBN(num_classes, in_channels, widths, hidden)


@register_model("resnet20", in_channels=1, image_size=28)
def resnet20(num_classes: int = 10, in_channels: int = 1, width: int = 16, inner: list[int] | None = None) -> CifarResNet:
    """He et al.'s CIFAR ResNet-20 (also the quantized-student paper's network)."""
    return CifarResNet(3, num_classes, in_channels, width, inner)


@register_model("resnet8", in_channels=1, image_size=28)
def resnet8(num_classes: int = 10, in_channels: int = 1, width: int = 16, inner: list[int] | None = None) -> CifarResNet:
    return CifarResNet(1, num_classes, in_channels, width, inner)


@register_model("resnet8_narrow", in_channels=1, image_size=28)
def resnet8_narrow(num_classes: int = 10, in_channels: int = 1, width: int = 8, inner: list[int] | None = None) -> CifarResNet:
    return CifarResNet(1, num_classes, in_channels, width, inner)


@register_model("resnet20_s2", in_channels=3, image_size=64)
def resnet20_s2(num_classes: int = 10, in_channels: int = 3, width: int = 16, inner: list[int] | None = None) -> CifarResNet:
    """ResNet-20 with a stride-2 stem: for 64-px images (the zoo's ``fmnist-rgb64`` task)."""
    return CifarResNet(3, num_classes, in_channels, width, inner, stem_stride=2)


@register_model("resnet8_narrow_s2", in_channels=3, image_size=64)
def resnet8_narrow_s2(num_classes: int = 10, in_channels: int = 3, width: int = 8, inner: list[int] | None = None) -> CifarResNet:
    """ResNet-8-narrow with a stride-2 stem: the student of ``resnet20_s2``."""
    return CifarResNet(1, num_classes, in_channels, width, inner, stem_stride=2)


@register_model("mobilenet_small", in_channels=1, image_size=28)
def mobilenet_small(num_classes: int = 10, in_channels: int = 1, width_mult: float = 2.0) -> MobileNetV1:
    return MobileNetV1(num_classes, in_channels, width_mult)


@register_model("mobilenet_tiny", in_channels=1, image_size=28)
def mobilenet_tiny(num_classes: int = 10, in_channels: int = 1, width_mult: float = 1.0) -> MobileNetV1:
    return MobileNetV1(num_classes, in_channels, width_mult)
