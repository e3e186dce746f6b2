"""runs/label_precision.py on a finished tiny run: fp32 is its own reference, bf16 labels are close but not equal,
and a folder that is not a run is refused with the fix."""

from __future__ import annotations


import pytest
import torch

from tests.conftest import tiny_config
from tests.conftest import randomized


@pytest.mark.e2e
def test_bf16_labels_of_a_runs_generator_are_measured_against_fp32(tmp_path, capsys):
    import runs.label_precision as check
    from datafree import build
    from datafree.build import reset_accelerate
    from datafree.io.checkpoint import save_weights
    from datafree.pipeline import distill_from_config

    config = tiny_config(tmp_path, teacher={"arch": "vgg_bn_small"}, generator={"width": 16, "latent_dim": 16,
                         "conditional": True}, train={"steps": 2, "eval_every": 2, "sample_every": 2,
                         "checkpoint_every": 2})  # fmt: skip
    spec = build.image_spec(config)
    torch.manual_seed(0)
    save_weights(randomized(build.build_net("vgg_bn_small", spec)), config.teacher_checkpoint,
                 {"arch": "vgg_bn_small", "num_classes": spec.num_classes})  # fmt: skip
    distill_from_config(config)
    reset_accelerate()
    result = check.labels_three_ways(tmp_path / "run", 40)
    rows = result["rows"]
    assert list(rows) == ["fp32 (reference)", "bf16, BatchNorm folded", "bf16, the teacher itself"]
    reference = rows["fp32 (reference)"]
    assert reference["agree"] == 1.0 and abs(reference["kl_mean"]) < 1e-6 and len(reference["p_asked"]) == 10
    assert all(0.0 <= p <= 1.0 for p in reference["p_asked"])
    for name in ("bf16, BatchNorm folded", "bf16, the teacher itself"):
        r = rows[name]
        assert r["kl_mean"] > 0 and r["kl_max"] < 0.05  # rounded, not another function
        assert max(abs(a - b) for a, b in zip(r["p_asked"], reference["p_asked"])) < 0.05
    assert check.main(["--run", str(tmp_path / "run"), "--images", "20"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n| ") == 4 and "| fp32 (reference) | 1.0000 |" in out


@pytest.mark.e2e
def test_a_folder_without_a_run_is_refused_with_the_fix(tmp_path, capsys):
    import runs.label_precision as check

    assert check.main(["--run", str(tmp_path)]) == 2
    assert "has no config.json: pass the folder of a finished data-free run" in capsys.readouterr().err
