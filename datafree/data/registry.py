"""The datasets registry: what a dataset provides (:class:`DatasetFamily`), and lookup by name.

Holds :class:`DatasetInfo`, :class:`DataMissingError`, the :class:`DatasetFamily` base class, the
:func:`register_dataset` decorator and the name-based lookups :func:`list_datasets`, :func:`dataset_info`,
:func:`dataset_family` and :func:`find_family`.

Adding a dataset: one file with one :class:`DatasetFamily` subclass that sets ``info`` (a :class:`DatasetInfo`
whose ``name`` is the registered name) and implements ``load``, decorated with ``@register_dataset("name")``.
Registration happens when that file is imported, so a dataset that ships with ``datafree`` also needs one
``from datafree.data import <file>`` line in ``datafree/data/__init__.py``; a dataset of your own only needs its
module imported before the name is used (tests/test_data.py registers one inside a test).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import transforms as T


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


class DatasetFamily:
    """One dataset (or one task on a dataset): its numbers and how to load it. Subclass and register it.

    Required: ``info`` (a class attribute or a property) and :meth:`load`. Optional: ``crop_padding`` and
    ``hflip`` (the training augmentation, used both by :meth:`transform` and by ``augment_batch``),
    :meth:`resize` (e.g. a centre crop first), :meth:`tensors` (a faster whole-split path) and
    :meth:`with_options` (only for stand-ins such as ``fake`` that take ``like=``/``fake_size=``).
    """

    info: ClassVar[DatasetInfo]
    crop_padding: ClassVar[int] = 0  # random crop after zero padding of this many pixels (0 = none)
    hflip: ClassVar[bool] = False  # random horizontal flip (mirror images keep their class)

    def load(self, root: Path, train: bool, download: bool, augment: bool) -> Dataset:
        """The split as a Dataset of ``(normalized float image (C, S, S), int label)``; missing data raises
        :class:`DataMissingError` unless ``download`` (then the loader may fetch it)."""
        raise NotImplementedError

    def resize(self) -> list:
        """PIL steps that bring an image to ``info.image_size`` (before augmentation and normalization)."""
        return [T.Resize(self.info.image_size)]

    def transform(self, train: bool, augment: bool) -> T.Compose:
        """Resize, augment only the training split, then normalize with ``info.mean``/``info.std``."""
        info, steps = self.info, self.resize()
        if train and augment:
            if self.crop_padding:
                steps.append(T.RandomCrop(info.image_size, padding=self.crop_padding))
            if self.hflip:
                steps.append(T.RandomHorizontalFlip())
        return T.Compose([*steps, T.ToTensor(), T.Normalize(info.mean, info.std)])

    def tensors(self, root: Path, train: bool, download: bool) -> TensorDataset:
        """The whole split in memory, no augmentation; by default item by item through :meth:`load`."""
        dataset = self.load(root, train, download, augment=False)
        parts = list(DataLoader(dataset, batch_size=512, num_workers=0))
        images = torch.cat([p[0] for p in parts])
        labels = torch.cat([torch.as_tensor(p[1]) for p in parts]).long()
        return TensorDataset(images.contiguous(), labels)

    def with_options(self, like: str | None, size: int | None) -> DatasetFamily:
        """The family to use for ``like=``/``fake_size=``; real datasets ignore both and return themselves."""
        return self


_FAMILIES: dict[str, DatasetFamily] = {}  # canonical name -> family
_ALIASES: dict[str, str] = {}  # canonical alias -> canonical name

Registrable = TypeVar("Registrable")  # the decorated class or instance, returned unchanged


def _key(name: str) -> str:
    """``Fashion_MNIST`` -> ``fashion-mnist``: case, surrounding blanks and ``_`` vs ``-`` do not matter."""
    return name.strip().lower().replace("_", "-")


def register_dataset(name: str, aliases: Sequence[str] = ()) -> Callable[[Registrable], Registrable]:
    """Class (or instance) decorator: make a :class:`DatasetFamily` available as ``name`` (and ``aliases``).

    A class is instantiated once without arguments; an instance is registered as is (so one class can serve
    several names, e.g. ``register_dataset("celeba-smiling")(CelebABinary("celeba-smiling", "Smiling"))``).
    The family's ``info.name`` must be ``name``. Registering a taken name or alias raises ``ValueError``.
    """
    key, alias_keys = _key(name), [_key(a) for a in aliases]

    def decorate(obj: Registrable) -> Registrable:
        family = obj() if isinstance(obj, type) else obj
        if not isinstance(family, DatasetFamily):
            raise TypeError(f"register_dataset({name!r}) needs a DatasetFamily subclass or instance, got {obj!r}")
        for k in (key, *alias_keys):
            if k in _FAMILIES or k in _ALIASES:
                raise ValueError(f"dataset name {k!r} is already registered (for {_ALIASES.get(k, k)!r})")
        if family.info.name != key:
            raise ValueError(f"register_dataset({name!r}): the family's info.name is {family.info.name!r}; "
                             f"they must match")  # fmt: skip
        _FAMILIES[key] = family
        _ALIASES.update({a: key for a in alias_keys})
        return obj

    return decorate


def list_datasets() -> list[str]:
    """Names accepted by :func:`dataset_info` and ``load_dataset`` (aliases not included)."""
    return sorted(_FAMILIES)


def find_family(name: str) -> DatasetFamily | None:
    """The family registered as ``name`` (or an alias of it), ``None`` if there is none."""
    key = _key(name)
    return _FAMILIES.get(_ALIASES.get(key, key))


def dataset_family(name: str, like: str | None = None, fake_size: int | None = None) -> DatasetFamily:
    """The family for ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    family = find_family(name)
    if family is None:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list_datasets()}")
    return family.with_options(like, fake_size)


def dataset_info(name: str, like: str | None = None) -> DatasetInfo:
    """Numbers for ``name``; for ``fake`` those of ``like`` (default fashion-mnist). ``like`` is ignored otherwise."""
    return dataset_family(name, like).info
