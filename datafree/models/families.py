"""Networks of other families than the zoo's BatchNorm CNNs: the held-out part of the teacher zoo.

The tuned zoo (``zoo.py``, ``lenet.py``) is four BatchNorm / plain CNNs that every recipe change was measured on.
These are the pairs no change is tuned on (``runs/bench_teachers.py --part held-out``): teachers whose
normalization is not BatchNorm (GroupNorm, a ViT's LayerNorm), a teacher with no ``nn.Linear`` at all, and
students of other families than their teachers (a plain CNN without normalization, an MLP). Every network takes
28x28 and 32x32 inputs alike (global pooling; the MLP pools to 14x14 first; the ViT resizes its position table).

| name | family | parameters (10 classes, 1 channel) |
|---|---|---|
| ``plain_cnn`` | four 3x3 conv + ReLU (no normalization), max-pool after the 1st and 3rd, GAP, fc | 33K |
| ``mlp`` | 2x2 average pooling to 14x14, then fc 196-256-128-K with ReLU | 85K |
| ``gn_cnn`` | the ``vgg_bn`` layout with GroupNorm (8 groups) for BatchNorm | 313K |
| ``vit_tiny`` | ViT (Dosovitskiy et al. 2021), patch 4, dim 96, 4 pre-norm blocks of 4 heads, mean-pooled tokens, fc | 0.31M |
| ``allconv`` | All-CNN-C's layout (Springenberg et al. 2015) at a third of its width with BatchNorm: 3x3 convs, strided convs for pooling, dropout 0.3 between stages, a 1x1 conv to K classes, GAP: no Linear | 0.15M |
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from datafree.models.registry import register_model


class PlainCNN(nn.Module):
    """conv-ReLU x4 (no normalization: nothing a BatchNorm prior could read in the student), max-pool after the
    1st and 3rd, GAP, fc."""

    default_taps = ("features.2", "features.6", "features.9")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths=(16, 32, 32, 64)):
        super().__init__()
        a, b, c, d = widths
        self.features = nn.Sequential(nn.Conv2d(in_channels, a, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(a, b, 3, padding=1), nn.ReLU(), nn.Conv2d(b, c, 3, padding=1),
                                      nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c, d, 3, padding=1), nn.ReLU())  # fmt: skip
        self.pool, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(d, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.features(x))))


class MLP(nn.Module):
    """Average-pooled to 14x14 (a fixed linear map, so any input size works), then three fully connected layers."""

    default_taps = ("relu1", "relu2")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, hidden=(256, 128), grid: int = 14):
        super().__init__()
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(grid), nn.Flatten()
        self.fc1, self.relu1 = nn.Linear(in_channels * grid * grid, hidden[0]), nn.ReLU()
        self.fc2, self.relu2 = nn.Linear(hidden[0], hidden[1]), nn.ReLU()
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(self.flatten(self.pool(x))))
        return self.fc3(self.relu2(self.fc2(x)))


def conv_gn(c_in: int, c_out: int, groups: int = 8) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.GroupNorm(groups, c_out), nn.ReLU())


class GroupNormCNN(nn.Module):
    """``vgg_bn``'s layout with GroupNorm: normalized per image, so there are no running statistics to read."""

    default_taps = ("features.1", "features.3", "features.6")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 64, 128, 128), hidden: int = 256):
        super().__init__()
        w = list(widths)
        self.features = nn.Sequential(conv_gn(in_channels, w[0]), nn.MaxPool2d(2), conv_gn(w[0], w[1]), nn.MaxPool2d(2),
                                      conv_gn(w[1], w[2]), conv_gn(w[2], w[3]), nn.MaxPool2d(2), conv_gn(w[3], w[4]))  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w[4], hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + MLP(LN(x)); its LayerNorms' inputs are the residual stream."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Patch embedding (a ``patch``-strided conv), learned positions on an 8x8 grid (resized bilinearly to the
    input's grid, 7x7 at 28 px), pre-norm blocks, a final LayerNorm, tokens averaged, fc. No class token."""

    default_taps = ("blocks.1", "blocks.3")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, patch: int = 4, dim: int = 96, depth: int = 4,
                 heads: int = 4, grid: int = 8):  # fmt: skip
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.position = nn.Parameter(torch.randn(1, dim, grid, grid) * 0.02)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(depth)])
        self.norm, self.fc = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        position = self.position
        if position.shape[-2:] != x.shape[-2:]:
            position = F.interpolate(position, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = (x + position).flatten(2).transpose(1, 2)  # (N, T, dim) tokens
        return self.fc(self.norm(self.blocks(x)).mean(dim=1))


class AllConv(nn.Module):
    """All-CNN-C (Springenberg et al., ICLR 2015 workshop) at a third of its width (96-192-192 there) with BatchNorm: strided 3x3 convs instead
    of pooling, dropout between stages, and the classifier a 1x1 conv to K channels averaged over space. There is
    no ``nn.Linear``: the penultimate feature is the input of that head conv (:func:`datafree.nets.features.penultimate_tap`)."""

    default_taps = ("stage1", "stage2", "stage3")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 64), dropout: float = 0.3):
        super().__init__()
        a, b, c = widths

        def block(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.stage1 = nn.Sequential(*block(in_channels, a), *block(a, a), *block(a, a, 2), nn.Dropout(dropout))
        self.stage2 = nn.Sequential(*block(a, b), *block(b, b), *block(b, b, 2), nn.Dropout(dropout))
        self.stage3 = nn.Sequential(*block(b, c), *block(c, c, kernel=1))
        self.head = nn.Conv2d(c, num_classes, 1)
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.head(self.stage3(self.stage2(self.stage1(x))))))


@register_model("plain_cnn", in_channels=1, image_size=28)
def plain_cnn(num_classes: int = 10, in_channels: int = 1, widths=(16, 32, 32, 64)) -> PlainCNN:
    return PlainCNN(num_classes, in_channels, widths)


@register_model("mlp", in_channels=1, image_size=28)
def mlp(num_classes: int = 10, in_channels: int = 1, hidden=(256, 128)) -> MLP:
    return MLP(num_classes, in_channels, hidden)


@register_model("gn_cnn", in_channels=1, image_size=28)
def gn_cnn(num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 64, 128, 128), hidden: int = 256) -> GroupNormCNN:
    return GroupNormCNN(num_classes, in_channels, widths, hidden)


@register_model("vit_tiny", in_channels=1, image_size=32)
def vit_tiny(num_classes: int = 10, in_channels: int = 1, patch: int = 4, dim: int = 96, depth: int = 4,
             heads: int = 4) -> ViT:  # fmt: skip
    return ViT(num_classes, in_channels, patch, dim, depth, heads)


@register_model("allconv", in_channels=1, image_size=32)
def allconv(num_classes: int = 10, in_channels: int = 1, widths=(32, 64, 64), dropout: float = 0.3) -> AllConv:
    return AllConv(num_classes, in_channels, widths, dropout)
