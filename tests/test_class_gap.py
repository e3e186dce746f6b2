"""runs/class_gap.py on a finished tiny run: a student that is its teacher agrees with it on every class, and a
folder that is not a run is refused with the fix."""

from __future__ import annotations

import math
import re

import pytest

from tests.conftest import finished_conditional_run


@pytest.mark.slow
def test_a_student_that_is_its_teacher_agrees_everywhere_and_the_spreads_are_measured(tmp_path, capsys):
    import runs.class_gap as check

    finished_conditional_run(tmp_path, "lenet5")
    (tmp_path / "run" / "student_last.safetensors").write_bytes((tmp_path / "teacher.safetensors").read_bytes())
    table = check.gap(tmp_path / "run", 4)
    assert len(table) == 10 and "64 generated images (step 2)" in capsys.readouterr().out
    agreements = [a for row in table for a in row[3:5] if not math.isnan(a)]  # nan: a class the teacher never names
    assert agreements and all(a == 1.0 for a in agreements)
    assert all(row[1] > 0 and row[2] >= 0 for row in table)  # spreads and shifts of real feature clouds
    assert all(0 < p < 1 for row in table for p in row[5:7]) and all(row[7] > 0 for row in table)
    sharpened = check.gap(tmp_path / "run", 4, sharpen=1.0)  # the same net on changed images: still all agree
    out = capsys.readouterr().out
    assert "sharpened by 1.0 px" in out
    teacher_acc, student_acc = re.search(r"teacher ([0-9.]+), student ([0-9.]+)", out).groups()
    assert teacher_acc == student_acc
    assert all(a == 1.0 for row in sharpened for a in row[3:5] if not math.isnan(a))
    assert [row[1] for row in sharpened] != [row[1] for row in table]  # the images did change


def test_blurring_and_sharpening_keep_a_flat_image_and_undo_each_other_to_first_order():
    import torch

    import runs.class_gap as check

    flat = torch.full((2, 1, 8, 8), 0.7)
    torch.testing.assert_close(check.changed(flat, 1.0, 0.0), flat)
    torch.testing.assert_close(check.changed(flat, 0.0, 1.0), flat)
    images = torch.randn(2, 1, 8, 8)
    assert torch.equal(check.changed(images, 0.0, 0.0), images)
    blurred, sharpened = check.changed(images, 1.0, 0.0), check.changed(images, 0.0, 1.0)
    torch.testing.assert_close((blurred + sharpened) / 2, images)  # x - d and x + d around x


def test_total_variation_by_hand():
    import torch

    import runs.class_gap as check

    ramp = torch.arange(4.0).repeat(4, 1)[None, None]  # columns 0 1 2 3: horizontal steps of 1, vertical of 0
    checker = (torch.arange(4)[:, None] + torch.arange(4)).remainder(2).float()[None, None]  # every step is 1
    torch.testing.assert_close(check.image_tv(torch.cat([ramp, 2 * checker])), torch.tensor([1.0, 4.0]))


@pytest.mark.e2e
def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    import runs.class_gap as check

    assert check.main([str(tmp_path)]) == 2
    assert "has no config.json; pass a data-free run's folder" in capsys.readouterr().err
