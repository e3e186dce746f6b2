"""Synthetic-data export: the documented format, ImageFolder compatibility, and offline distillation from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from datafree import build
from datafree.config import ConfigError
from datafree.cli.export import main as export_main
from datafree.ship.export import export_synthetic, load_run, to_input
from datafree.offline import distill_from_export
from datafree.pipeline import distill_from_config
from tests.conftest import save_random_teacher, tiny_config

N = 64


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One tiny data-free run and its export, shared by this module's tests (they only read them)."""
    config = tiny_config(tmp_path_factory.mktemp("export"))
    save_random_teacher(config)
    distill_from_config(config)
    return config, export_synthetic(config.train.output_dir, N, out=Path(config.train.output_dir).parent / "export")


@pytest.fixture
def tiny(made):
    return made[0]


@pytest.fixture
def exported(made):
    return made[1]


@pytest.mark.slow
def test_export_format(exported, tiny):
    assert {p.name for p in exported.iterdir()} == {"images", "synthetic.safetensors", "export.json", "README.md"}
    t = load_file(str(exported / "synthetic.safetensors"))
    assert t["images"].dtype == torch.uint8 and t["images"].shape == (N, 1, 32, 32)
    assert t["teacher_logits"].shape == t["soft_labels"].shape == (N, 10) and t["labels"].shape == (N,)
    assert torch.allclose(t["soft_labels"].sum(dim=1), torch.ones(N), atol=1e-5)
    assert torch.allclose(t["soft_labels"], t["teacher_logits"].softmax(dim=1), atol=1e-6)
    assert torch.equal(t["labels"], t["soft_labels"].argmax(dim=1))
    meta = json.loads((exported / "export.json").read_text())
    assert (meta["n"], meta["num_classes"], meta["channels"], meta["image_size"]) == (N, 10, 1, 32)
    assert meta["class_counts"] == torch.bincount(t["labels"], minlength=10).tolist()
    # the labels describe the stored 8-bit images: the teacher gives the same logits on them
    run = load_run(tiny.train.output_dir)
    with torch.no_grad():
        again = run.teacher(to_input(t["images"], run.spec))
    assert torch.allclose(again, t["teacher_logits"], atol=1e-4)
    # each PNG holds the same pixels as its row, in the folder of its label
    pngs = sorted((exported / "images").glob("*/*.png"))
    assert len(pngs) == N
    for png in pngs[:10]:
        row = int(png.stem)
        assert int(png.parent.name) == int(t["labels"][row])
        assert np.array_equal(np.array(Image.open(png)), t["images"][row, 0].numpy())


def test_imagefolder_reads_the_export_with_the_right_classes(exported):
    from torchvision.datasets import ImageFolder

    labels = load_file(str(exported / "synthetic.safetensors"))["labels"]
    folder = ImageFolder(str(exported / "images"), allow_empty=True)
    assert len(folder) == N and folder.class_to_idx == {f"{k:03d}": k for k in range(10)}
    for path, target in folder.samples:
        assert target == int(labels[int(path.rsplit("/", 1)[1].split(".")[0])])
    image, _ = folder[0]
    assert image.size == (32, 32)


def test_export_refuses_to_overwrite_and_cli_reports_errors(exported, tiny, tmp_path, capsys):
    with pytest.raises(FileExistsError):
        export_synthetic(tiny.train.output_dir, 8, out=exported)
    assert export_main(["--run", tiny.train.output_dir, "--n", "8", "--out", str(tmp_path / "cli")]) == 0
    assert len(list((tmp_path / "cli" / "images").glob("*/*.png"))) == 8
    assert export_main(["--run", str(tmp_path / "nothing"), "--n", "8"]) == 2
    assert "not a finished run" in capsys.readouterr().err


def test_distill_from_export_trains_a_student(exported, tmp_path):
    config = tiny_config(tmp_path / "offline", train={"steps": 12, "batch_size": 16, "eval_every": 4, "log_every": 2})
    results = distill_from_export(config, exported)
    out = tmp_path / "offline" / "run"
    for name in ("results.json", "metrics.jsonl", "report.md", "student_best.safetensors", "student_last.safetensors"):
        assert (out / name).exists(), name
    assert json.loads((out / "results.json").read_text()) == results
    assert results["source"] == "export" and results["images_generated"] == N and results["steps"] == 12
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evaluated = [l["student_acc"] for l in lines if "student_acc" in l]
    assert results["student_acc_final"] == evaluated[-1] and results["student_acc_best"] == max(evaluated)
    assert [m["step"] for m in lines] == [2, 4, 6, 8, 10, 12] and "student_acc" in lines[1]
    assert "exported synthetic set" in (out / "report.md").read_text()
    # the student learned the stored soft labels: its KD on the export is below a fresh student's
    t = load_file(str(exported / "synthetic.safetensors"))
    spec = build.image_spec(config)
    x = to_input(t["images"], spec)

    def kd(net):
        with torch.no_grad():
            return F.kl_div(net.eval()(x).log_softmax(1), t["soft_labels"], reduction="batchmean").item()

    torch.manual_seed(0)
    fresh = build.build_net("lenet5_half", spec)
    trained = build.build_net("lenet5_half", spec)
    trained.load_state_dict(load_file(str(out / "student_last.safetensors")))
    assert kd(trained) < kd(fresh)


@pytest.mark.e2e
def test_train_dfl_from_export_flag(exported, tmp_path):
    import train_dfl

    out = tmp_path / "cli_offline"
    argv = ["--config", str(Path(train_dfl.__file__).parent / "runs" / "fmnist.toml"), "--from-export", str(exported), "--data.name", "fake", "--data.like",
            "fashion-mnist", "--data.fake_size", "64", "--train.steps", "4", "--train.batch_size", "16",
            "--train.eval_every", "2", "--train.output_dir", str(out), "--runtime.mixed_precision", "no"]  # fmt: skip
    assert train_dfl.main(argv) == 0
    assert json.loads((out / "results.json").read_text())["source"] == "export"


def test_export_must_fit_the_recipe(exported, tmp_path):
    wrong_shape = tiny_config(tmp_path / "a", data={"like": "cifar10"}, teacher={"arch": "resnet18"},
                              student={"arch": "resnet18"})  # fmt: skip
    with pytest.raises(ConfigError, match="export holds"):
        distill_from_export(wrong_shape, exported)
    feature_loss = tiny_config(tmp_path / "b", distill=[{"name": "kd"}, {"name": "at"}])
    with pytest.raises(ConfigError, match="stored teacher logits only"):
        distill_from_export(feature_loss, exported)
