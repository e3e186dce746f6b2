"""Tests for datafree.data: offline Fashion-MNIST discovery, missing-data errors, fake data, CelebA classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from datafree.data import (
    CELEBA_ALL_ATTRIBUTES,
    CELEBA_ATTRIBUTES,
    FMNIST_DEBIAN_DIR,
    FMNIST_FILES,
    DataMissingError,
    DatasetInfo,
    celeba_attrs_to_class,
    dataset_info,
    list_datasets,
    load_dataset,
)

needs_debian_fmnist = pytest.mark.skipif(
    not Path(FMNIST_DEBIAN_DIR).is_dir(),
    reason=f"{FMNIST_DEBIAN_DIR} absent (apt-get install dataset-fashion-mnist to run this test)",
)


@pytest.fixture
def debian_fmnist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure a DATAFREE_FMNIST_DIR set in the caller's shell does not redirect the Debian lookup."""
    monkeypatch.delenv("DATAFREE_FMNIST_DIR", raising=False)


@needs_debian_fmnist
def test_fashion_mnist_from_debian_files(tmp_path: Path, debian_fmnist: None) -> None:
    train = load_dataset("fashion-mnist", root=tmp_path, train=True)
    test = load_dataset("fashion-mnist", root=tmp_path, train=False)
    assert (len(train), len(test)) == (60000, 10000)
    image, label = train[0]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert isinstance(label, int)
    assert set(train.targets.tolist()) == set(range(10)) and set(test.targets.tolist()) == set(range(10))
    batch = torch.stack([train[i][0] for i in range(0, 60000, 20)])  # 3000 images
    assert abs(batch.mean().item()) < 0.05
    assert abs(batch.std().item() - 1.0) < 0.1


@needs_debian_fmnist
def test_fashion_mnist_decompresses_once(tmp_path: Path, debian_fmnist: None) -> None:
    load_dataset("fashion-mnist", root=tmp_path, train=False)
    raw = tmp_path / "FashionMNIST" / "raw"
    files = [raw / f for f in FMNIST_FILES]
    assert all(f.is_file() for f in files)
    assert not list(raw.glob("*.tmp")), "temp files must be renamed or removed"
    mtimes = [f.stat().st_mtime_ns for f in files]
    load_dataset("fashion-mnist", root=tmp_path, train=True)
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_fashion_mnist_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-debian"
    empty.mkdir()
    monkeypatch.setenv("DATAFREE_FMNIST_DIR", str(empty))
    with pytest.raises(DataMissingError, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset("fashion-mnist", root=tmp_path / "root")
    assert "--data.download true" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)


def test_cifar10_missing(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="--data.download true") as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path) in str(err.value)


def test_unknown_name_lists_datasets() -> None:
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset("imagenet-9000")
    assert {"mnist", "fashion-mnist", "cifar10", "cifar100", "celeba", "fake"} == set(list_datasets())


def test_info_numbers() -> None:
    assert dataset_info("mnist") == DatasetInfo("mnist", 10, 1, 32, (0.1307,), (0.3081,), tuple("0123456789"))
    fm = dataset_info("fashion-mnist")
    assert fm.class_names[0] == "T-shirt/top" and fm.mean == (0.2860,)
    assert dataset_info("cifar10").std == (0.2023, 0.1994, 0.2010)
    assert dataset_info("cifar100").num_classes == 100
    celeba = dataset_info("celeba")
    assert (celeba.num_classes, celeba.channels, celeba.image_size) == (8, 3, 64)
    assert dataset_info("cifar10", like="mnist") == dataset_info("cifar10")


@pytest.mark.parametrize(("like", "shape", "classes"), [("cifar10", (3, 32, 32), 10), ("celeba", (3, 64, 64), 8)])
def test_fake_follows_like(like: str, shape: tuple[int, ...], classes: int) -> None:
    info = dataset_info("fake", like=like)
    assert info.name == "fake" and info.num_classes == classes
    assert info.mean == dataset_info(like).mean
    ds = load_dataset("fake", like=like, fake_size=64)
    assert len(ds) == 64
    labels = [ds[i][1] for i in range(len(ds))]
    assert ds[0][0].shape == shape and set(labels) == set(range(classes))


def test_fake_default_is_fashion_mnist_sized() -> None:
    assert dataset_info("fake") == dataset_info("fake", like="fashion-mnist")
    assert (len(load_dataset("fake")), len(load_dataset("fake", train=False))) == (2048, 512)


def test_fake_deterministic_and_splits_differ() -> None:
    a, b = load_dataset("fake", fake_size=32), load_dataset("fake", fake_size=32)
    test = load_dataset("fake", train=False, fake_size=32)
    for i in (0, 7, 31):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
        assert not torch.equal(a[i][0], test[i][0])
    x = torch.stack([a[i][0] for i in range(32)])
    assert abs(x.mean().item()) < 0.2 and abs(x.std().item() - 1.0) < 0.2


def _tensors(ds) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs), torch.tensor(ys)


def test_fake_is_learnable() -> None:
    torch.manual_seed(0)
    x, y = _tensors(load_dataset("fake", like="fashion-mnist", train=True))
    xt, yt = _tensors(load_dataset("fake", like="fashion-mnist", train=False))
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))  # logistic regression
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(200):
        idx = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.5, f"fake test accuracy {acc:.2f} after 200 steps"


def test_celeba_attribute_mapping() -> None:
    assert CELEBA_ATTRIBUTES == ("Heavy_Makeup", "Mouth_Slightly_Open", "Smiling")
    attrs = torch.zeros(40, dtype=torch.long)
    attrs[CELEBA_ALL_ATTRIBUTES.index("Heavy_Makeup")] = 1
    attrs[CELEBA_ALL_ATTRIBUTES.index("Smiling")] = 1
    attrs[CELEBA_ALL_ATTRIBUTES.index("Male")] = 1  # other attributes must not matter
    assert int(celeba_attrs_to_class(attrs)) == 5  # 0b101: makeup (MSB), mouth closed, smiling (LSB)
    assert dataset_info("celeba").class_names[5] == "+Heavy_Makeup,-Mouth_Slightly_Open,+Smiling"
    batch = torch.stack([torch.zeros(40, dtype=torch.long), torch.ones(40, dtype=torch.long)])
    assert celeba_attrs_to_class(batch).tolist() == [0, 7]
    raw_pm1 = attrs * 2 - 1  # list_attr_celeba.txt stores -1/1
    assert int(celeba_attrs_to_class(raw_pm1)) == 5
