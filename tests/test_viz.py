"""The sample grids a run writes (samples/step_*.png): which classes get a row."""

import torch

from datafree.io.viz import class_grid, save_class_grid


def test_few_classes_keep_a_row_each_at_a_fixed_place():
    images = torch.arange(1, 5, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    grid = class_grid(images, torch.tensor([3, 3, 0, 5]), num_classes=10, per_class=2)
    assert grid.shape == (20, 1, 2, 2)  # every class its row, present or not
    firsts = grid[:, 0, 0, 0]
    assert firsts[0] == 3 and firsts[6] == 1 and firsts[7] == 2 and firsts[10] == 4  # rows 0, 3 and 5
    assert firsts[[1, 2, 3, 4, 5, 8, 9, 11]].eq(0).all()


def test_many_classes_show_the_classes_the_batch_holds(tmp_path):
    """A 100-class teacher's batch holds a window of classes (here 40..71): rows for classes 0..19 would be black."""
    labels = torch.arange(40, 72).repeat_interleave(2)
    images = torch.rand(64, 3, 4, 4) + 0.1
    grid = class_grid(images, labels, num_classes=100, per_class=2)
    assert grid.shape == (40, 3, 4, 4)  # 20 rows of 2
    assert torch.equal(grid, images[:40])  # classes 40..59 in order, both images of each
    path = save_class_grid(images, labels, tmp_path / "step.png", 100, (0.5,) * 3, (0.5,) * 3)
    assert path.stat().st_size > 0
