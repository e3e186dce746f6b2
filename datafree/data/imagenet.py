"""ImageNet-1k (ILSVRC 2012) as an image folder, registered as ``imagenet``: 1000 classes at 224x224.

Nothing is downloaded (ImageNet's licence requires signing up at image-net.org): the split is read from
``<data.root>/imagenet/train`` and ``<data.root>/imagenet/val``, each with one sub-folder per class named by its
WordNet id (``n01440764/...``; torchvision's ``ImageFolder`` layout, classes in sorted order: the order of
torchvision's and timm's ImageNet models). Images are resized to 256 and centre-cropped to 224, normalized with
the usual ImageNet mean/std (torchvision's weights' own transforms); the training split is also randomly flipped.

The point of registering it without the data: a teacher trained on ImageNet is described (1000 classes, 224 px,
its normalization and class names) by name, and ``fake`` can stand in for it (``data.name = "fake"``,
``data.like = "imagenet"``) so a 1000-class run is tested offline.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets
from torchvision import transforms as T

from datafree.data.registry import DataMissingError, DatasetFamily, DatasetInfo, register_dataset


def _class_names() -> tuple[str, ...]:
    """The 1000 human-readable names torchvision ships with its ImageNet weights (in the package: no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@register_dataset("imagenet", aliases=("imagenet-1k", "ilsvrc2012"))
class ImageNet(DatasetFamily):
    """ImageNet-1k from a local image folder; random flips for training."""

    hflip = True
    info = DatasetInfo("imagenet", 1000, 3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), _class_names())

    def resize(self) -> list:
        return [T.Resize(256), T.CenterCrop(224)]

    def load(self, root: Path, train: bool, download: bool, augment: bool) -> Dataset:
        folder = Path(root) / "imagenet" / ("train" if train else "val")
        if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
            raise DataMissingError(f"ImageNet is not at {folder} (one sub-folder per class, named by WordNet id): "
                                   "it cannot be downloaded automatically (its licence requires an account at "
                                   "image-net.org); put the extracted ILSVRC 2012 train / val folders there, or use "
                                   "data.name = \"fake\" with data.like = \"imagenet\" for a generated stand-in")  # fmt: skip
        dataset = datasets.ImageFolder(str(folder), transform=self.transform(train, augment))
        if len(dataset.classes) != self.info.num_classes:
            raise DataMissingError(f"{folder} has {len(dataset.classes)} class folders, ImageNet-1k has 1000")
        return dataset
