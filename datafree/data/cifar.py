"""CIFAR-10 and CIFAR-100 (32x32 colour, torchvision's python version), registered as ``cifar10``/``cifar100``.

Both train with random 4-pixel crops and horizontal flips. To add a dataset, write a file like this one (a
:class:`DatasetFamily` subclass with ``info`` and ``load`` under ``@register_dataset``) and import it in
``datafree/data/__init__.py``.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, TensorDataset
from torchvision import datasets

from datafree.data._torchvision import array_tensors, torchvision_load
from datafree.data.registry import DatasetFamily, DatasetInfo, register_dataset


class _CIFAR(DatasetFamily):
    """Shared loading: ``tv_class`` under ``root/folder``; tensors straight from the uint8 array."""

    crop_padding = 4
    hflip = True
    tv_class: type[datasets.CIFAR10]
    folder: str

    def load(self, root: Path, train: bool, download: bool, augment: bool) -> Dataset:
        tf = self.transform(train, augment)
        make = lambda: self.tv_class(str(root), train=train, transform=tf, download=download)  # noqa: E731
        return torchvision_load(make, self.info.name, str(root / self.folder), download)

    def tensors(self, root: Path, train: bool, download: bool) -> TensorDataset:
        return array_tensors(self.load(root, train, download, augment=False), self.info)


@register_dataset("cifar10")
class CIFAR10(_CIFAR):
    """10 classes; mean/std as in the official DAFL code."""

    info = DatasetInfo(
        "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    )  # fmt: skip
    tv_class, folder = datasets.CIFAR10, "cifar-10-batches-py"


@register_dataset("cifar100")
class CIFAR100(_CIFAR):
    """100 fine classes. Their names are only known once the dataset is on disk; the loader does not need them."""

    info = DatasetInfo(
        "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), tuple(str(i) for i in range(100))
    )  # fmt: skip
    tv_class, folder = datasets.CIFAR100, "cifar-100-python"
