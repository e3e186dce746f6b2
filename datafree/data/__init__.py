"""Real datasets by name (teacher training, student evaluation) plus a learnable ``fake`` stand-in.

Every item is ``(image, label)``: a float tensor of shape ``(channels, image_size, image_size)`` normalized
with the dataset's mean/std, and an ``int`` class id. Nothing is downloaded unless ``download=True``;
missing data raises :class:`DataMissingError` whose message says how to get it.

Layout: ``registry.py`` (the :class:`DatasetFamily` protocol, ``@register_dataset``, lookups by name),
``loading.py`` (``load_dataset``, ``load_tensors``, ``recipe_split``, ``augment_batch``), one file per family (``mnist.py``:
mnist, fashion-mnist; ``cifar.py``: cifar10, cifar100; ``celeba.py``: celeba, celeba8; ``imagenet.py``: imagenet (local folder only); ``fmnist_tasks.py``: fmnist-pairs100, fmnist-rgb64 (made from Fashion-MNIST); ``fake.py``: fake).

Adding a dataset: write ``datafree/data/<name>.py`` with one :class:`DatasetFamily` subclass (``info`` +
``load``) under ``@register_dataset("<name>")``, and add its module to the import line below: a family is
registered when its file is imported, and this import line is the only place that lists the files.
"""

from datafree.data import celeba, cifar, fake, fmnist_tasks, imagenet, mnist  # noqa: F401  (importing a family file registers it)
from datafree.data.celeba import (
    CELEBA_ALL_ATTRIBUTES,
    CELEBA_ATTRIBUTES,
    CelebAAttribute,
    CelebABinary,
    CelebAClasses,
    celeba_attrs_to_class,
    most_balanced_attribute,
)
from datafree.data.fake import FakeDataset
from datafree.data.loading import augment_batch, load_dataset, load_tensors, recipe_split
from datafree.data.mnist import FMNIST_DEBIAN_DIR, FMNIST_FILES
from datafree.data.registry import (
    DataMissingError,
    DatasetFamily,
    DatasetInfo,
    dataset_family,
    dataset_info,
    find_family,
    list_datasets,
    register_dataset,
)

__all__ = [
    "CELEBA_ALL_ATTRIBUTES", "CELEBA_ATTRIBUTES", "FMNIST_DEBIAN_DIR", "FMNIST_FILES", "CelebAAttribute",
    "CelebABinary", "CelebAClasses", "DataMissingError", "DatasetFamily", "DatasetInfo", "FakeDataset",
    "augment_batch", "celeba_attrs_to_class", "dataset_family", "dataset_info", "find_family", "list_datasets",
    "load_dataset", "load_tensors", "recipe_split", "most_balanced_attribute", "register_dataset",
]  # fmt: skip
