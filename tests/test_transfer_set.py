"""runs/transfer_set.py: a fresh student learns a rule from teacher logits alone; sets are shared equally; a run
folder's images are measured against as many real ones."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import finished_conditional_run, save_random_teacher, tiny_config


def test_a_fresh_student_learns_the_teachers_rule_from_its_logits_alone():
    import runs.transfer_set as check

    torch.manual_seed(0)
    images = torch.randn(512, 1, 28, 28)
    bright = images[:, :, :, :14].mean(dim=(1, 2, 3)) > images[:, :, :, 14:].mean(dim=(1, 2, 3))  # left half brighter
    logits = torch.stack([bright.float(), (~bright).float()], dim=1) * 6.0  # a sure teacher; no label is passed
    net = check.train_student("mlp", {}, images, logits, steps=300)
    fresh = torch.randn(256, 1, 28, 28)
    truth = (fresh[:, :, :, :14].mean(dim=(1, 2, 3)) <= fresh[:, :, :, 14:].mean(dim=(1, 2, 3))).long()
    with torch.no_grad():
        agree = (net(fresh).argmax(dim=1) == truth).float().mean()
    assert agree > 0.85  # chance is 0.5: a loss that ignored or scrambled the logits stays near it


def test_an_equal_share_of_each_set_as_many_images_as_the_first():
    import runs.transfer_set as check

    sets = [(torch.full((6, 1, 2, 2), float(k)), torch.full((6, 3), float(k))) for k in range(3)]
    images, logits = check.shares(sets)
    assert len(images) == len(logits) == 6
    assert images[:, 0, 0, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0] and logits[:, 0].tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.slow
def test_a_run_is_measured_against_as_many_real_images_and_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    import runs.transfer_set as check

    finished_conditional_run(tmp_path, "mlp")
    rows = check.compare([tmp_path / "run", tmp_path / "run"], batches=2, steps=3)
    out = capsys.readouterr().out
    assert [r[0].split(":")[0] for r in rows] == ["generated", "generated", "generated", "real training images, the teacher's logits"]
    assert "a fresh mlp on 32 images per set, 3 steps" in out  # 2 batches of the run's 16
    assert rows[0][1] == rows[1][1]  # the same run twice: the same images, the same student
    assert all(0.0 <= acc <= 1.0 and len(per_class) == 10 for _, acc, per_class in rows)
    assert check.main([str(tmp_path)]) == 2 and "has no config.json" in capsys.readouterr().err


def test_a_generator_file_that_does_not_fit_its_recipe_is_an_error_naming_it(tmp_path, capsys):
    import json
    from dataclasses import asdict

    import runs.transfer_set as check
    from safetensors.torch import save_file

    config = tiny_config(tmp_path, student={"arch": "mlp"}, generator={"conditional": True})
    save_random_teacher(config)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(asdict(config)))
    save_file({"not.a.generator": torch.zeros(1)}, str(run / "generator.safetensors"))
    save_file({"not.a.student": torch.zeros(1)}, str(run / "student_last.safetensors"))
    assert check.main([str(run), "--batches", "1", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not match" in err and "Traceback" not in err
