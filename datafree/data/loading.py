"""Loading any registered dataset by name: :func:`load_dataset`, :func:`load_tensors`, :func:`augment_batch`.

Every item is ``(image, label)``: a float tensor of shape ``(channels, image_size, image_size)`` normalized
with the dataset's mean/std, and an ``int`` class id. Nothing is downloaded unless ``download=True``;
missing data raises :class:`DataMissingError` whose message says how to get it. Nothing here names a dataset:
each family (one file per family, see registry.py) says how it loads and augments.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from datafree.data.registry import DatasetInfo, dataset_family, find_family


def load_dataset(
    name: str,
    root: str | Path = "data",
    train: bool = True,
    augment: bool = False,
    download: bool = False,
    like: str | None = None,
    fake_size: int | None = None,
) -> Dataset:
    """Dataset of ``(normalized image, int label)``; ``like``/``fake_size`` only matter for ``fake``."""
    family = dataset_family(name, like, fake_size)
    return family.load(Path(root), train=train, download=download, augment=augment)


def load_tensors(name: str, root: str | Path = "data", train: bool = True, download: bool = False,
                 like: str | None = None, fake_size: int | None = None) -> TensorDataset:  # fmt: skip
    """A whole split as normalized tensors in memory (no augmentation).

    Per-item PIL transforms cost ~1 ms an image on a CPU, more than LeNet's own forward pass, so
    training and evaluation use this instead and augment whole batches with :func:`augment_batch`.
    MNIST-style and CIFAR sets are converted straight from their uint8 arrays; others item by item.
    """
    family = dataset_family(name, like, fake_size)
    return family.tensors(Path(root), train=train, download=download)


def recipe_split(data, train: bool) -> TensorDataset:
    """The split a recipe's ``[data]`` table (a DataConfig) names, as :func:`load_tensors` gives it."""
    return load_tensors(data.name, root=data.root, train=train, download=data.download, like=data.like or None,
                        fake_size=data.fake_size or None)  # fmt: skip


def augment_batch(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """The training augmentation of :func:`load_dataset` applied to a whole normalized batch at once.

    Random crop after zero padding (the family's ``crop_padding``: 2 px for MNIST-style data, 4 px for CIFAR;
    padding is black, i.e. -mean/std once normalized) and a horizontal flip for datasets where mirror images keep
    their class (``hflip``). A name that is not registered gets no augmentation.
    """
    family = find_family(info.name)
    pad, hflip = (family.crop_padding, family.hflip) if family is not None else (0, False)
    b, c, h, w = images.shape
    out = images
    if pad:
        fill = torch.tensor([-m / s for m, s in zip(info.mean, info.std)], device=images.device, dtype=images.dtype)
        padded = fill.view(1, c, 1, 1).expand(b, c, h + 2 * pad, w + 2 * pad).clone()
        padded[:, :, pad:pad + h, pad:pad + w] = images
        dy = torch.randint(0, 2 * pad + 1, (b, 1, 1), device=images.device)
        dx = torch.randint(0, 2 * pad + 1, (b, 1, 1), device=images.device)
        rows = (dy + torch.arange(h, device=images.device).view(1, h, 1)).expand(b, h, w)
        cols = (dx + torch.arange(w, device=images.device).view(1, 1, w)).expand(b, h, w)
        batch = torch.arange(b, device=images.device).view(b, 1, 1).expand(b, h, w)
        out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    if hflip:
        flip = torch.rand(b, device=images.device) < 0.5
        out = torch.where(flip.view(b, 1, 1, 1), out.flip(3), out)
    return out.contiguous()
