"""The harder real tasks built from Fashion-MNIST's images (datafree/data/fmnist_tasks.py): what each image and label
is made of, the recorded normalization, and names a table can print."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datafree.data import FMNIST_DEBIAN_DIR, dataset_info, load_dataset

needs_debian_fmnist = pytest.mark.skipif(
    not Path(FMNIST_DEBIAN_DIR).is_dir(),
    reason=f"{FMNIST_DEBIAN_DIR} absent (apt-get install dataset-fashion-mnist to run this test)",
)


@pytest.fixture
def items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, torch.Tensor]:
    monkeypatch.delenv("DATAFREE_FMNIST_DIR", raising=False)
    test = load_dataset("fashion-mnist", root=tmp_path, train=False)
    return tmp_path, torch.as_tensor(test.targets)


def test_class_names_fit_a_markdown_cell():
    pairs = dataset_info("fmnist-pairs100").class_names
    assert len(pairs) == 100 and pairs[10 * 6 + 0] == "Shirt + T-shirt/top"
    assert not any("|" in name for name in pairs)  # a table cell would split on it
    assert dataset_info("fmnist-rgb64").class_names == dataset_info("fashion-mnist").class_names


@pytest.mark.slow
@needs_debian_fmnist
def test_pairs100_labels_are_ten_times_the_left_item_plus_the_right_one(items):
    root, item_labels = items
    pairs = load_dataset("fmnist-pairs100", root=root, train=False)
    images, labels = pairs.tensors
    assert images.shape == (10000, 1, 32, 32) and set(labels.tolist()) == set(range(100))
    assert torch.equal(labels // 10, item_labels)  # the left item is test image i, in order
    black = (0 - 0.1434) / 0.2689  # the task's normalization: a pixel 0 outside the two items
    assert torch.allclose(images[:, :, :8], torch.full_like(images[:, :, :8], black))
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05  # recorded on the training split


@pytest.mark.slow
@needs_debian_fmnist
def test_rgb64_is_the_item_on_a_coloured_canvas_and_keeps_its_label(items):
    root, item_labels = items
    images, labels = load_dataset("fmnist-rgb64", root=root, train=False).tensors
    assert images.shape == (10000, 3, 64, 64) and torch.equal(labels, item_labels)
    corners = images[:, :, 0, 0]  # mostly the canvas (an item's own border is black, so rarely the ink)
    assert corners.std(dim=0).min() > 0.5  # a random colour per image, in each channel
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.1
