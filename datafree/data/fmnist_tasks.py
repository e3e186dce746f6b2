"""Harder real tasks built offline from Fashion-MNIST's images: many classes, colour and larger images.

CIFAR-100, ImageNet and CelebA cannot be downloaded on every machine this project runs on; these two tasks are made
from the Fashion-MNIST files Debian ships, deterministically (fixed seeds), so a 100-class and a 64-px RGB teacher
can be trained and distilled anywhere. They are of our design, not benchmarks from the literature.

| name | classes | image | how an image is made |
|---|---|---|---|
| ``fmnist-pairs100`` | 100 | 1 x 32 x 32 | two items side by side, each shrunk to 16 x 16 (left: item i, right: item p(i) of a fixed permutation); class = 10 x left class + right class |
| ``fmnist-rgb64`` | 10 | 3 x 64 x 64 | one item enlarged to 40 x 40 at a random place on a canvas of a random colour, its pixels tinted with another random colour; class = the item's |

Mirroring would swap a pair's items (another class), so ``fmnist-pairs100`` has no flips; both take random 2-pixel
(4-pixel at 64 px) crops when a teacher trains.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from datafree.data.mnist import FashionMNIST
from datafree.data.registry import DatasetFamily, DatasetInfo, register_dataset

NAMES = FashionMNIST.info.class_names


def _items(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST's split as (N, 28, 28) intensities in [0, 1] and labels."""
    split = FashionMNIST().load(root, train, download, augment=False)
    return torch.as_tensor(split.data).float().div_(255), torch.as_tensor(split.targets, dtype=torch.long)


def _normalized(pixels: torch.Tensor, labels: torch.Tensor, info: DatasetInfo) -> TensorDataset:
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    return TensorDataset(((pixels - mean) / std).contiguous(), labels)


class _Built(DatasetFamily):
    """A task computed from Fashion-MNIST once per process (a few seconds) and kept as tensors."""

    _cache: dict[tuple[str, str, bool], TensorDataset] = {}

    def build(self, root: Path, train: bool, download: bool) -> TensorDataset:
        raise NotImplementedError

    def tensors(self, root: Path, train: bool, download: bool) -> TensorDataset:
        key = (self.info.name, str(Path(root).resolve()), train)
        if key not in self._cache:
            self._cache[key] = self.build(Path(root), train, download)
        return self._cache[key]

    def load(self, root: Path, train: bool, download: bool, augment: bool) -> Dataset:
        return self.tensors(root, train, download)  # augmentation happens batch-wise (augment_batch) when training


@register_dataset("fmnist-pairs100")
class FashionPairs(_Built):
    """100 classes: (left item's class, right item's class)."""

    crop_padding = 2
    info = DatasetInfo("fmnist-pairs100", 100, 1, 32, (0.1434,), (0.2689,),  # measured on the training split
                       tuple(f"{a} + {b}" for a in NAMES for b in NAMES))  # fmt: skip

    def build(self, root: Path, train: bool, download: bool) -> TensorDataset:
        items, labels = _items(root, train, download)
        small = F.interpolate(items.unsqueeze(1), size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
        partner = torch.randperm(len(items), generator=torch.Generator().manual_seed(100 + int(train)))
        canvas = torch.zeros(len(items), 1, 32, 32)
        canvas[:, :, 8:24, 0:16], canvas[:, :, 8:24, 16:32] = small, small[partner]
        return _normalized(canvas, 10 * labels + labels[partner], self.info)


@register_dataset("fmnist-rgb64")
class FashionOnCanvas(_Built):
    """10 classes: a tinted item on a coloured 64 x 64 canvas."""

    crop_padding, hflip = 4, True
    # by construction: uniform colours give mean 0.5; the item (mean intensity 0.286, second moment 0.206) covers
    # 1600 / 4096 of the canvas, so var = (E[(1 - m)^2] + E[m^2]) / 12 = (0.857 + 0.081) / 12 -> std 0.280
    info = DatasetInfo("fmnist-rgb64", 10, 3, 64, (0.5, 0.5, 0.5), (0.280, 0.280, 0.280), NAMES)

    def build(self, root: Path, train: bool, download: bool) -> TensorDataset:
        items, labels = _items(root, train, download)
        g = torch.Generator().manual_seed(200 + int(train))
        n = len(items)
        background, ink = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
        where = torch.randint(0, 64 - 40 + 1, (n, 2), generator=g)
        large = F.interpolate(items.unsqueeze(1), size=(40, 40), mode="bilinear", align_corners=False).clamp_(0, 1)
        mask = torch.zeros(n, 1, 64, 64)
        for i, (y, x) in enumerate(where.tolist()):  # ~60K slice copies: a second or two
            mask[i, :, y : y + 40, x : x + 40] = large[i]
        return _normalized(background + mask * (ink - background), labels, self.info)
