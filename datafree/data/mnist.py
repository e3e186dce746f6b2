"""MNIST and Fashion-MNIST (28x28 grayscale, 10 classes, resized to 32x32), sharing their loading code.

Fashion-MNIST is first looked for in Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/
fashion-mnist``, or ``$DATAFREE_FMNIST_DIR``) and decompressed once into torchvision's layout, so it works offline.
Registered as ``mnist``, ``fashion-mnist`` (alias ``fmnist``) and ``fashion-mnist-28`` (native size). To add a dataset, copy a family class into a
new file of this folder with its own ``@register_dataset`` and import that file in ``datafree/data/__init__.py``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

from torch.utils.data import Dataset, TensorDataset
from torchvision import datasets

from datafree.data._torchvision import array_tensors, torchvision_load
from datafree.data.registry import DataMissingError, DatasetFamily, DatasetInfo, register_dataset

FMNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip


class _MNISTStyle(DatasetFamily):
    """28x28 uint8 arrays in torchvision: random 2-pixel crops for training, the whole split as tensors at once."""

    crop_padding = 2

    def tensors(self, root: Path, train: bool, download: bool) -> TensorDataset:
        return array_tensors(self.load(root, train, download, augment=False), self.info)


@register_dataset("mnist")
class MNIST(_MNISTStyle):
    """Handwritten digits; no flips (a mirrored digit is not a digit)."""

    info = DatasetInfo("mnist", 10, 1, 32, (0.1307,), (0.3081,), tuple(str(i) for i in range(10)))

    def load(self, root: Path, train: bool, download: bool, augment: bool) -> Dataset:
        tf = self.transform(train, augment)
        make = lambda: datasets.MNIST(str(root), train=train, transform=tf, download=download)  # noqa: E731
        return torchvision_load(make, "mnist", str(root / "MNIST" / "raw"), download)


@register_dataset("fashion-mnist", aliases=("fmnist",))
class FashionMNIST(_MNISTStyle):
    """Zalando's clothing images; mirror images keep their class."""

    info = DatasetInfo(
        "fashion-mnist", 10, 1, 32, (0.2860,), (0.3530,),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    )  # fmt: skip
    hflip = True

    def load(self, root: Path, train: bool, download: bool, augment: bool) -> Dataset:
        tf = self.transform(train, augment)
        need_download = _prepare_fashion_mnist(root, download)
        return datasets.FashionMNIST(str(root), train=train, transform=tf, download=need_download)


@register_dataset("fashion-mnist-28", aliases=("fmnist28",))
class FashionMNIST28(FashionMNIST):
    """Fashion-MNIST at its native 28x28 (the zoo's GAP networks take either size; LeNet-5 needs 32x32)."""

    info = DatasetInfo("fashion-mnist-28", 10, 1, 28, FashionMNIST.info.mean, FashionMNIST.info.std,
                       FashionMNIST.info.class_names)  # fmt: skip


def _write_atomic_gunzip(src: Path, dst: Path) -> None:
    """Decompress via a temp file + os.replace so a crash never leaves a truncated IDX file behind."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=dst.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, length=1 << 20)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the data is not secret
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prepare_fashion_mnist(root: Path, download: bool) -> bool:
    """Make ``root/FashionMNIST/raw`` complete from disk if possible; return whether torchvision must download."""
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for f in FMNIST_FILES):
        return False
    debian = Path(os.environ.get("DATAFREE_FMNIST_DIR", FMNIST_DEBIAN_DIR))
    if all((debian / f"{f}.gz").is_file() for f in FMNIST_FILES):
        raw.mkdir(parents=True, exist_ok=True)
        for f in FMNIST_FILES:
            if not (raw / f).is_file():
                _write_atomic_gunzip(debian / f"{f}.gz", raw / f)
        return False
    if download:
        return True
    raise DataMissingError(
        f"Fashion-MNIST not found in {raw} nor in {debian}. Get it with one of:\n"
        "  sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu package, offline mirrors)\n"
        "  pass --data.download true                     (on a machine with internet)\n"
        f"  put {', '.join(FMNIST_FILES)} (uncompressed IDX) into {raw}/"
    )
