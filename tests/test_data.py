"""Tests for datafree.data: offline Fashion-MNIST discovery, missing-data errors, fake data, CelebA tasks, and the
registry (a new dataset is one decorated class)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from torch.utils.data import Dataset, TensorDataset

from datafree.data import (
    CELEBA_ALL_ATTRIBUTES,
    CELEBA_ATTRIBUTES,
    FMNIST_DEBIAN_DIR,
    FMNIST_FILES,
    DataMissingError,
    DatasetFamily,
    DatasetInfo,
    augment_batch,
    celeba_attrs_to_class,
    dataset_info,
    find_family,
    list_datasets,
    load_dataset,
    load_tensors,
    most_balanced_attribute,
    register_dataset,
    registry,
)

needs_debian_fmnist = pytest.mark.skipif(
    not Path(FMNIST_DEBIAN_DIR).is_dir(),
    reason=f"{FMNIST_DEBIAN_DIR} absent (apt-get install dataset-fashion-mnist to run this test)",
)


@pytest.fixture
def debian_fmnist(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure a DATAFREE_FMNIST_DIR set in the caller's shell does not redirect the Debian lookup."""
    monkeypatch.delenv("DATAFREE_FMNIST_DIR", raising=False)


@pytest.mark.slow
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
def test_fashion_mnist_28_is_the_native_images_normalized_like_the_32_pixel_one(tmp_path: Path, debian_fmnist: None) -> None:
    native = load_tensors("fashion-mnist-28", root=tmp_path, train=False)
    resized = load_tensors("fashion-mnist", root=tmp_path, train=False)
    assert native.tensors[0].shape == (10000, 1, 28, 28) and resized.tensors[0].shape == (10000, 1, 32, 32)
    assert torch.equal(native.tensors[1], resized.tensors[1])
    pixels = native.tensors[0] * 0.3530 + 0.2860  # back to [0, 1]: exactly the uint8 file's values / 255
    assert torch.allclose(pixels * 255, (pixels * 255).round(), atol=1e-3) and pixels.min() >= -1e-6


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
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet-9000")
    assert "fashion-mnist" in list_datasets() and all(name in str(err.value) for name in list_datasets())
    assert dataset_info("Fashion_MNIST") == dataset_info("fmnist") == dataset_info("fashion-mnist")
    assert dataset_info("CelebA-3attr") == dataset_info("celeba8")


def test_info_numbers() -> None:
    assert dataset_info("mnist") == DatasetInfo("mnist", 10, 1, 32, (0.1307,), (0.3081,), tuple("0123456789"))
    fm = dataset_info("fashion-mnist")
    assert fm.class_names[0] == "T-shirt/top" and fm.mean == (0.2860,)
    assert dataset_info("cifar10").std == (0.2023, 0.1994, 0.2010)
    assert dataset_info("cifar100").num_classes == 100
    celeba = dataset_info("celeba")  # binary: the most balanced attribute, named once the attribute file is read
    assert (celeba.num_classes, celeba.channels, celeba.image_size, celeba.mean) == (2, 3, 64, (0.5, 0.5, 0.5))
    celeba8 = dataset_info("celeba8")
    assert (celeba8.num_classes, celeba8.channels, celeba8.image_size) == (8, 3, 64)
    assert dataset_info("cifar10", like="mnist") == dataset_info("cifar10")


@pytest.mark.parametrize(
    ("like", "shape", "classes"),
    [("cifar10", (3, 32, 32), 10), ("celeba", (3, 64, 64), 2), ("celeba8", (3, 64, 64), 8)],
)
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
    assert dataset_info("celeba8").class_names[5] == "+Heavy_Makeup,-Mouth_Slightly_Open,+Smiling"
    batch = torch.stack([torch.zeros(40, dtype=torch.long), torch.ones(40, dtype=torch.long)])
    assert celeba_attrs_to_class(batch).tolist() == [0, 7]
    raw_pm1 = attrs * 2 - 1  # list_attr_celeba.txt stores -1/1
    assert int(celeba_attrs_to_class(raw_pm1)) == 5


def _write_attr_files(folder: Path, rows: dict[str, list[int]], partition: dict[str, int] | None) -> None:
    """list_attr_celeba.txt (count, names, ``<image> <-1|1> ...`` padded like the real file) [+ partition]."""
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{image} " + " ".join(f"{v:2d}" for v in values) + "\n" for image, values in rows.items())
    (folder / "list_attr_celeba.txt").write_text(f"{len(rows)}\n" + " ".join(CELEBA_ALL_ATTRIBUTES) + " \n" + body)
    if partition is not None:
        (folder / "list_eval_partition.txt").write_text("".join(f"{i} {p}\n" for i, p in partition.items()))


def test_most_balanced_attribute_counts_the_training_split_only(tmp_path: Path) -> None:
    """8 training rows: Bald 2/8, Smiling 3/8, Young 4/8 (the pick), every other attribute 0 or 8/8. The 4 test
    rows would make Smiling the most balanced overall (7/12 vs Young 4/12), so they must be ignored."""
    names, rows = CELEBA_ALL_ATTRIBUTES, {}
    for i in range(12):
        values = [1 if a == "Male" else -1 for a in names]
        train = i < 8
        for attr, positive in (("Bald", train and i < 2), ("Smiling", i < 3 or not train), ("Young", train and i % 2)):
            values[names.index(attr)] = 1 if positive else -1
        rows[f"{i + 1:06d}.jpg"] = values
    _write_attr_files(tmp_path, rows, {image: 0 if i < 8 else 2 for i, image in enumerate(rows)})
    assert most_balanced_attribute(tmp_path) == ("Young", 0.5)
    (tmp_path / "list_eval_partition.txt").unlink()  # without the partition file every row counts
    assert most_balanced_attribute(tmp_path) == ("Smiling", 7 / 12)


def test_most_balanced_attribute_tie_goes_to_the_first_listed(tmp_path: Path) -> None:
    rows = {f"{i:06d}.jpg": [1 if (i + j) % 2 else -1 for j in range(40)] for i in range(1, 5)}  # all at 50%
    _write_attr_files(tmp_path, rows, {image: 0 for image in rows})
    assert most_balanced_attribute(tmp_path) == (CELEBA_ALL_ATTRIBUTES[0], 0.5)


def test_celeba_binary_task_from_a_synthetic_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``celeba`` end to end through torchvision's loader (md5 checks bypassed): the attribute is picked from the
    training rows, the test split is labelled by it, and the class names follow once the file has been read."""
    from PIL import Image
    from torchvision import datasets

    monkeypatch.setattr(datasets.CelebA, "_check_integrity", lambda self: True)
    monkeypatch.setattr(find_family("celeba"), "chosen", None)  # the pick is remembered per process
    folder = tmp_path / "celeba"
    images, split = [f"{i:06d}.jpg" for i in range(1, 9)], [0, 0, 0, 0, 2, 2, 2, 1]
    rows = {image: [-1] * 40 for image in images}
    for k, image in enumerate(images):  # train rows 0-3: Eyeglasses 2/4 (the pick), Heavy_Makeup 3/4, Smiling 1/4
        for attr, on in (("Eyeglasses", (0, 1, 5, 7)), ("Heavy_Makeup", (0, 1, 2)), ("Smiling", (0, 4, 5, 6))):
            rows[image][CELEBA_ALL_ATTRIBUTES.index(attr)] = 1 if k in on else -1
    _write_attr_files(folder, rows, dict(zip(images, split)))
    (folder / "img_align_celeba").mkdir()
    for k, image in enumerate(images):
        Image.new("RGB", (178, 218), (30 * k, 0, 0)).save(folder / "img_align_celeba" / image)
    for name, header, values in (("identity_CelebA.txt", "", "1"), ("list_bbox_celeba.txt", "8\nx y w h\n", "0 0 1 1"),
                                 ("list_landmarks_align_celeba.txt", "8\nnames\n", " ".join(["0"] * 10))):  # fmt: skip
        (folder / name).write_text(header + "".join(f"{image} {values}\n" for image in images))

    assert dataset_info("celeba").class_names == ("negative", "positive")
    test = load_dataset("celeba", root=tmp_path, train=False)
    assert (test.attribute, test.positive_fraction) == ("Eyeglasses", 0.5)
    assert [test[i][1] for i in range(len(test))] == [0, 1, 0]  # test rows 5, 6, 7
    assert test[0][0].shape == (3, 64, 64)
    assert dataset_info("celeba").class_names == ("not Eyeglasses", "Eyeglasses")
    assert load_tensors("celeba8", root=tmp_path, train=True).tensors[1].tolist() == [5, 4, 4, 0]  # bits M, O, S


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Datasets registered inside a test are forgotten after it."""
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))


def test_a_new_dataset_is_one_decorated_class(scratch_registry: None) -> None:
    @register_dataset("tiny-stripes", aliases=("stripes",))
    class TinyStripes(DatasetFamily):
        """4x4 images: class 0 = horizontal stripes, class 1 = vertical ones."""

        info = DatasetInfo("tiny-stripes", 2, 1, 4, (0.5,), (0.5,), ("horizontal", "vertical"))
        hflip = True

        def load(self, root: Path, train: bool, download: bool, augment: bool) -> Dataset:
            stripes = torch.tensor([[1.0, 0.0, 1.0, 0.0]] * 4)
            labels = torch.arange(6 if train else 4) % 2
            images = torch.stack([stripes.T, stripes])[labels].unsqueeze(1)
            return TensorDataset((images - 0.5) / 0.5, labels)

    assert "tiny-stripes" in list_datasets()
    assert dataset_info("Tiny_Stripes") is TinyStripes.info and dataset_info("stripes") is TinyStripes.info
    images, labels = load_tensors("tiny-stripes", train=False).tensors
    assert images.shape == (4, 1, 4, 4) and labels.tolist() == [0, 1, 0, 1]
    assert images[0, 0, 0].tolist() == [1.0, 1.0, 1.0, 1.0] and images[1, 0, 0].tolist() == [1.0, -1.0, 1.0, -1.0]
    assert len(load_dataset("stripes")) == 6
    fake = dataset_info("fake", like="tiny-stripes")  # the stand-in follows it too
    assert (fake.name, fake.num_classes, fake.image_size) == ("fake", 2, 4)
    flipped = augment_batch(images, TinyStripes.info)  # its hflip = True is used for whole batches
    assert all(torch.equal(f, x) or torch.equal(f, x.flip(2)) for f, x in zip(flipped, images))

    with pytest.raises(ValueError, match="'tiny-stripes' is already registered"):
        register_dataset("Tiny_Stripes")(TinyStripes)
    with pytest.raises(ValueError, match="'stripes' is already registered"):
        register_dataset("other", aliases=("stripes",))(TinyStripes)
    with pytest.raises(ValueError, match="'fashion-mnist' is already registered"):
        register_dataset("fashion-mnist")(TinyStripes)
    with pytest.raises(ValueError, match="info.name is 'tiny-stripes'"):
        register_dataset("tiny-stripes-2")(TinyStripes)
    with pytest.raises(TypeError, match="DatasetFamily"):
        register_dataset("not-a-family")(object)


def test_registered_names_are_forgotten_after_the_test() -> None:
    assert "tiny-stripes" not in list_datasets()
