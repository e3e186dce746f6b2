"""Helpers shared by the torchvision-backed families (mnist.py, cifar.py, celeba.py); registers no dataset.

:func:`missing` is the uniform "not found" message, :func:`torchvision_load` turns torchvision's
``RuntimeError`` for absent data into :class:`DataMissingError`, and :func:`array_tensors` converts a
torchvision dataset that keeps its images as one uint8 array (MNIST-style, CIFAR) straight to normalized tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from datafree.data.registry import DataMissingError, DatasetInfo


def missing(name: str, where: str) -> DataMissingError:
    """Uniform message for torchvision datasets that are absent (or corrupted) under root."""
    return DataMissingError(
        f"{name} not found (or corrupted) at {where}.\n"
        "Get it with one of:\n"
        "  pass --data.download true   (on a machine with internet; torchvision downloads it)\n"
        f"  put the torchvision folder for {name} at {where}"
    )


def torchvision_load(make: Callable[[], Dataset], name: str, where: str, download: bool) -> Dataset:
    """``make()``, with torchvision's ``RuntimeError`` for absent data re-raised as :func:`missing` (unless
    ``download``, where the original error is more useful)."""
    try:
        return make()
    except RuntimeError as err:
        if download:
            raise
        raise missing(name, where) from err


def array_tensors(dataset, info: DatasetInfo) -> TensorDataset:
    """A torchvision dataset with ``.data`` (N, H, W) or (N, H, W, C) uint8 and ``.targets`` as normalized
    tensors, resized to ``info.image_size`` (antialiased bilinear) if needed. Per-item PIL transforms cost
    ~1 ms an image on a CPU, more than LeNet's own forward pass; this takes well under a second for MNIST."""
    pixels = torch.as_tensor(dataset.data).float().div_(255)
    pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
    if pixels.shape[-1] != info.image_size:
        pixels = F.interpolate(pixels, size=(info.image_size, info.image_size), mode="bilinear",
                               align_corners=False, antialias=True)  # fmt: skip
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    images, labels = (pixels - mean) / std, torch.as_tensor(dataset.targets, dtype=torch.long)
    return TensorDataset(images.contiguous(), labels)
