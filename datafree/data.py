"""Real datasets by name (teacher training, student evaluation) plus a learnable ``fake`` stand-in.

Every item is ``(image, label)``: a float tensor of shape ``(channels, image_size, image_size)`` normalized
with the dataset's mean/std, and an ``int`` class id. Nothing is downloaded unless ``download=True``;
missing data raises :class:`DataMissingError` whose message says how to get it.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import datasets
from torchvision import transforms as T

FMNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip

# CelebA as a multi-class task: the 3-bit code of these attributes, first = most significant bit (8 classes).
CELEBA_ATTRIBUTES: tuple[str, ...] = ("Heavy_Makeup", "Mouth_Slightly_Open", "Smiling")
# The 40 attribute names in the order of CelebA's list_attr_celeba.txt.
CELEBA_ALL_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip


class DataMissingError(FileNotFoundError):
    """A dataset is not on disk and may not be downloaded; the message says exactly how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """Shape, classes and normalization of a dataset, so models and generators can be built without loading it."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


def _celeba_class_names() -> tuple[str, ...]:
    """Readable names of the 8 codes, e.g. ``+Heavy_Makeup,-Mouth_Slightly_Open,+Smiling`` for class 5."""
    k = len(CELEBA_ATTRIBUTES)
    return tuple(
        ",".join(("+" if (c >> (k - 1 - i)) & 1 else "-") + a for i, a in enumerate(CELEBA_ATTRIBUTES))
        for c in range(2**k)
    )


_INFOS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 10, 1, 32, (0.1307,), (0.3081,), tuple(str(i) for i in range(10))),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, 1, 32, (0.2860,), (0.3530,),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    # cifar10 mean/std as in the official DAFL code.
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), tuple(str(i) for i in range(100))
    ),
    "celeba": DatasetInfo(
        "celeba", 2 ** len(CELEBA_ATTRIBUTES), 3, 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), _celeba_class_names()
    ),
}  # fmt: skip
# CIFAR-100 fine label names are only known once the dataset is on disk; the loader does not need them.


def list_datasets() -> list[str]:
    """Names accepted by :func:`dataset_info` and :func:`load_dataset`."""
    return sorted([*_INFOS, "fake"])


def _canonical(name: str) -> str:
    """Accept ``Fashion_MNIST``-style spellings; reject unknown names with the list of valid ones."""
    key = name.strip().lower().replace("_", "-")
    if key not in _INFOS and key != "fake":
        raise ValueError(f"unknown dataset {name!r}; choose one of {list_datasets()}")
    return key


def dataset_info(name: str, like: str | None = None) -> DatasetInfo:
    """Numbers for ``name``; for ``fake`` those of ``like`` (default fashion-mnist). ``like`` is ignored otherwise."""
    key = _canonical(name)
    if key != "fake":
        return _INFOS[key]
    like_key = _canonical(like or "fashion-mnist")
    if like_key == "fake":
        raise ValueError("fake cannot be like fake; pass a real dataset name as like")
    return replace(_INFOS[like_key], name="fake")


def celeba_attrs_to_class(attrs: torch.Tensor, attr_names: Sequence[str] = CELEBA_ALL_ATTRIBUTES) -> torch.Tensor:
    """Class id = 3-bit code of ``CELEBA_ATTRIBUTES`` (first is the MSB), for one ``(40,)`` or a batch ``(N, 40)``."""
    names = list(attr_names)
    idx = torch.tensor([names.index(a) for a in CELEBA_ATTRIBUTES])
    bits = (attrs.index_select(-1, idx) > 0).long()
    weights = 2 ** torch.arange(len(CELEBA_ATTRIBUTES) - 1, -1, -1)
    return (bits * weights).sum(-1)


class CelebAClasses(Dataset):
    """torchvision CelebA with attributes mapped to the 8 classes of :func:`celeba_attrs_to_class`.

    Our reading of DAFL (Chen et al., ICCV 2019), whose exact CelebA label set we could not confirm:
    a multi-class task built from binary attributes. We take the three most balanced attributes (each close to
    50% positive, so all 8 codes are well populated and no majority class dominates accuracy), the 8-class
    construction common in later CelebA work (e.g. WaNet). Change ``CELEBA_ATTRIBUTES`` to use another set.
    """

    def __init__(self, base: datasets.CelebA) -> None:
        self.base = base
        self.targets = celeba_attrs_to_class(base.attr, base.attr_names)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, _ = self.base[i]
        return image, int(self.targets[i])


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


def _transform(info: DatasetInfo, train: bool, augment: bool) -> T.Compose:
    """Resize/crop to the model's input size, augment only the training split, then normalize."""
    key, size = info.name, info.image_size
    steps: list = [T.CenterCrop(178), T.Resize(size)] if key == "celeba" else [T.Resize(size)]
    if train and augment:
        if key in ("mnist", "fashion-mnist"):
            steps.append(T.RandomCrop(size, padding=2))
        elif key in ("cifar10", "cifar100"):
            steps.append(T.RandomCrop(size, padding=4))
        if key in ("fashion-mnist", "cifar10", "cifar100", "celeba"):
            steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.ToTensor(), T.Normalize(info.mean, info.std)])


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


def _missing(name: str, where: str) -> DataMissingError:
    """Uniform message for torchvision datasets that are absent (or corrupted) under root."""
    return DataMissingError(
        f"{name} not found (or corrupted) at {where}.\n"
        "Get it with one of:\n"
        "  pass --data.download true   (on a machine with internet; torchvision downloads it)\n"
        f"  put the torchvision folder for {name} at {where}"
    )


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
    info = dataset_info(name, like)
    key, root = info.name, Path(root)
    if key == "fake":
        size = fake_size if fake_size is not None else (2048 if train else 512)
        return FakeDataset(info, size, train)
    tf = _transform(info, train, augment)
    if key == "fashion-mnist":
        need_download = _prepare_fashion_mnist(root, download)
        return datasets.FashionMNIST(str(root), train=train, transform=tf, download=need_download)
    split = "train" if train else "test"
    where = {
        "mnist": root / "MNIST" / "raw",
        "cifar10": root / "cifar-10-batches-py",
        "cifar100": root / "cifar-100-python",
        "celeba": root / "celeba",
    }[key]
    try:
        if key == "mnist":
            return datasets.MNIST(str(root), train=train, transform=tf, download=download)
        if key == "cifar10":
            return datasets.CIFAR10(str(root), train=train, transform=tf, download=download)
        if key == "cifar100":
            return datasets.CIFAR100(str(root), train=train, transform=tf, download=download)
        base = datasets.CelebA(str(root), split=split, target_type="attr", transform=tf, download=download)
        return CelebAClasses(base)
    except RuntimeError as err:
        if download:
            raise
        raise _missing(key, str(where)) from err


def load_tensors(name: str, root: str | Path = "data", train: bool = True, download: bool = False,
                 like: str | None = None, fake_size: int | None = None) -> TensorDataset:  # fmt: skip
    """A whole split as normalized tensors in memory (no augmentation).

    Per-item PIL transforms cost ~1 ms an image on a CPU, more than LeNet's own forward pass, so
    training and evaluation use this instead and augment whole batches with :func:`augment_batch`.
    MNIST-style and CIFAR sets are converted straight from their uint8 arrays; others item by item.
    """
    info = dataset_info(name, like)
    dataset = load_dataset(name, root, train=train, augment=False, download=download, like=like, fake_size=fake_size)
    if isinstance(dataset, (datasets.MNIST, datasets.CIFAR10)):  # FashionMNIST / CIFAR100 are subclasses
        pixels = torch.as_tensor(dataset.data).float().div_(255)
        pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
        if pixels.shape[-1] != info.image_size:
            pixels = F.interpolate(pixels, size=(info.image_size, info.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)  # fmt: skip
        mean = torch.tensor(info.mean).view(1, -1, 1, 1)
        std = torch.tensor(info.std).view(1, -1, 1, 1)
        images, labels = (pixels - mean) / std, torch.as_tensor(dataset.targets, dtype=torch.long)
    else:
        loader = DataLoader(dataset, batch_size=512, num_workers=0)
        parts = list(loader)
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([torch.as_tensor(p[1]) for p in parts]).long()
    return TensorDataset(images.contiguous(), labels)


def augment_batch(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """The training augmentation of :func:`load_dataset` applied to a whole normalized batch at once.

    Random crop after zero padding (2 px for MNIST-style data, 4 px for CIFAR; padding is black, i.e.
    -mean/std once normalized) and a horizontal flip for datasets where mirror images keep their class.
    """
    key = info.name
    pad = {"mnist": 2, "fashion-mnist": 2, "cifar10": 4, "cifar100": 4}.get(key, 0)
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
    if key in ("fashion-mnist", "cifar10", "cifar100", "celeba"):
        flip = torch.rand(b, device=images.device) < 0.5
        out = torch.where(flip.view(b, 1, 1, 1), out.flip(3), out)
    return out.contiguous()
