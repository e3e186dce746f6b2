"""``fake``: a learnable, generated stand-in with the shape and classes of another dataset (``like=``).

Used by smoke runs and tests, so no real data is needed. ``dataset_info("fake", like="cifar10")`` is CIFAR-10's
info renamed ``fake``; ``like`` defaults to fashion-mnist. The family shows the one optional hook real datasets
do not need, :meth:`DatasetFamily.with_options`.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

import datafree.data.mnist  # noqa: F401  registers fashion-mnist, the default ``like``
from datafree.data.registry import DatasetFamily, DatasetInfo, dataset_info, register_dataset


class FakeDataset(Dataset):
    """Learnable stand-in: per class a fixed smooth random prototype; per item a shift, a contrast, a smooth
    random "style" field of the same kind as the prototypes (so the task is not trivially linear) and pixel noise.

    Items are generated on the fly from ``(split seed, index)``, so the data is deterministic, costs no memory,
    and train/test are different draws from one distribution (prototypes depend only on ``info``).
    Labels cycle through the classes (balanced). Values are ~zero mean, unit std, i.e. already "normalized".
    """

    STYLE = 1.0  # std of the per-item smooth nuisance field, relative to the prototypes' unit std
    NOISE = 0.5  # std of the per-pixel white noise

    def __init__(self, info: DatasetInfo, size: int, train: bool) -> None:
        self.info, self.size = info, size
        n, c, s = info.num_classes, info.channels, info.image_size
        self.grid = max(2, s // 8)
        g = torch.Generator().manual_seed(zlib.crc32(repr((n, c, s, info.mean)).encode()))
        self.protos = self._smooth(torch.randn(n, c, self.grid, self.grid, generator=g))
        self.seed = 1_000_003 * (1 if train else 2)
        self.max_shift = max(1, s // 10)
        self.targets = [i % n for i in range(size)]

    def _smooth(self, low: torch.Tensor) -> torch.Tensor:
        """Upsample a coarse random grid to a smooth image, standardized per image to zero mean, unit std."""
        s = self.info.image_size
        up = F.interpolate(low, size=(s, s), mode="bicubic", align_corners=False).flatten(1)
        return ((up - up.mean(1, keepdim=True)) / up.std(1, keepdim=True)).view(-1, self.info.channels, s, s)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.size:
            raise IndexError(i)
        g = torch.Generator().manual_seed(self.seed + i)
        label = self.targets[i]
        dy, dx = torch.randint(-self.max_shift, self.max_shift + 1, (2,), generator=g).tolist()
        contrast = 0.8 + 0.4 * torch.rand((), generator=g)
        style = self._smooth(torch.randn(1, self.info.channels, self.grid, self.grid, generator=g))[0]
        image = contrast * torch.roll(self.protos[label], shifts=(dy, dx), dims=(1, 2)) + self.STYLE * style
        image = image + self.NOISE * torch.randn(image.shape, generator=g)
        return image / (1.0 + self.STYLE**2 + self.NOISE**2) ** 0.5, label


@register_dataset("fake")
class Fake(DatasetFamily):
    """``FakeDataset`` shaped like ``like``; ``size`` items (default 2048 train / 512 test). No augmentation."""

    def __init__(self, like: str | None = None, size: int | None = None) -> None:
        self.like, self.size = like, size

    @property
    def info(self) -> DatasetInfo:  # type: ignore[override]
        like_info = dataset_info(self.like or "fashion-mnist")
        if like_info.name == "fake":
            raise ValueError("fake cannot be like fake; pass a real dataset name as like")
        return replace(like_info, name="fake")

    def with_options(self, like: str | None, size: int | None) -> DatasetFamily:
        return Fake(like, size)

    def load(self, root: Path, train: bool, download: bool, augment: bool) -> Dataset:
        size = self.size if self.size is not None else (2048 if train else 512)
        return FakeDataset(self.info, size, train)
