"""Every bad input named in the DAFL issue fails before training, with a message naming problem and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datafree import build
from datafree.io.checkpoint import CheckpointError, save_weights
from datafree.config import ConfigError, load_toml
from datafree.pipeline import distill_from_config
from datafree.nets.spec import ImageSpec
from tests.conftest import save_random_teacher, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _ran_no_step(config) -> bool:
    return not Path(config.train.output_dir, "metrics.jsonl").exists()


@pytest.mark.parametrize("section,key,value,known", [
    ("data", "name", "imagenet-42", "fashion-mnist"),
    ("student", "arch", "resnet9000", "lenet5_half"),
    ("generator", "arch", "stylegan9", "dafl"),
])  # fmt: skip
def test_unknown_names_list_the_known_ones(tmp_path, section, key, value, known):
    config = tiny_config(tmp_path, **{section: {key: value}})
    if section != "data":
        save_random_teacher(config)
    with pytest.raises(ValueError, match=known):
        distill_from_config(config)
    assert _ran_no_step(config)


def test_unknown_loss_lists_registered_losses(tiny):
    tiny.distill[0].name = "kd_but_better"
    with pytest.raises(ValueError, match=r"registered losses: .*kd"):
        distill_from_config(tiny)


def test_missing_teacher_checkpoint_says_how_to_train_it(tmp_path):
    config = tiny_config(tmp_path)
    with pytest.raises(CheckpointError, match="train_teacher.py"):
        distill_from_config(config)
    assert _ran_no_step(config)


def test_teacher_checkpoint_of_another_architecture(tmp_path):
    config = tiny_config(tmp_path)
    spec = build.image_spec(config)
    save_weights(build.build_net("lenet5_half", spec), config.teacher_checkpoint, {"arch": "lenet5_half"})
    with pytest.raises(CheckpointError, match=r"does not match.*lenet5_half"):
        distill_from_config(config)


def test_teacher_checkpoint_with_other_class_count(tmp_path):
    config = tiny_config(tmp_path)
    net = build.build_net("lenet5", ImageSpec(1, 32, 7))
    save_weights(net, config.teacher_checkpoint, {"arch": "lenet5", "num_classes": 7})
    with pytest.raises(ConfigError, match="7 classes"):
        distill_from_config(config)


def test_class_count_mismatch_between_network_and_dataset():
    spec = ImageSpec(channels=1, image_size=32, num_classes=10)
    student = build.build_net("lenet5_half", ImageSpec(1, 32, 8))
    with pytest.raises(ConfigError, match="num_classes=10"):
        build.check_network(student, spec, "student")


@pytest.mark.parametrize("spec,needle", [(ImageSpec(1, 16, 10), r"\(1, 16, 16\)"), (ImageSpec(3, 32, 10), r"\(3, 32, 32\)")])
def test_image_size_or_channels_the_teacher_cannot_take(spec, needle):
    teacher = build.build_net("lenet5", ImageSpec(1, 32, 10))
    with pytest.raises(ConfigError, match=f"cannot take images of shape {needle}"):
        build.check_network(teacher, spec, "teacher 'lenet5'")


def test_unreadable_checkpoint_is_reported_not_unpickled(tmp_path):
    config = tiny_config(tmp_path)
    Path(config.teacher_checkpoint).write_bytes(b"\x80\x04 not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        distill_from_config(config)


def test_bad_recipe_values_and_keys(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[train]\nstepz = 3\n')
    with pytest.raises(ConfigError, match="stepz"):
        load_toml(recipe)
    recipe.write_text('[[synthesis]]\nname = "entropy"\nweight = 5.0\nparams = {log = "log2"}\n')
    from datafree.synthesis import create_synthesis_term

    term = load_toml(recipe).synthesis[0]  # term parameters are checked by the term, when build creates it
    with pytest.raises(ValueError, match="log10"):
        create_synthesis_term(term.name, **term.params)
    with pytest.raises(ValueError, match="registered terms: .*entropy"):
        create_synthesis_term("entropyy")
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")


@pytest.mark.e2e
def test_cli_prints_a_clear_error_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train_dfl.py"), "--student.arch", "nope",
                           "--train.output_dir", str(tmp_path / "o"), "--teacher.checkpoint", str(tmp_path / "t.safetensors")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_statistics_and_export_files_are_clear_errors_and_files_follow_the_umask(tmp_path):
    import os

    from datafree.io.checkpoint import atomic_write_text, save_tensors
    from datafree.nets.feature_stats import load_reference
    from datafree.offline import read_export

    bad = tmp_path / "teacher.stats.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="unreadable or corrupt.*datafree.cli.feature_stats"):
        load_reference(bad)
    export = tmp_path / "export"
    export.mkdir()
    (export / "export.json").write_text('{"format": "datafree-synthetic", "version": 1}')
    (export / "synthetic.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable or corrupt.*datafree.cli.export"):
        read_export(export)
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        save_tensors({"x": torch.zeros(1)}, tmp_path / "b.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert (tmp_path / "b.safetensors").stat().st_mode & 0o777 == 0o644


def test_a_recipe_loaded_in_python_is_validated_before_anything_is_written(tmp_path):
    from datafree.pipeline import distill_from_config
    from tests.conftest import save_random_teacher, tiny_config

    config = tiny_config(tmp_path, train={"sample_every": 0})  # from_dict alone does not validate
    save_random_teacher(config)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\n')  # an earlier run's log
    with pytest.raises(ConfigError, match="sample_every must be > 0"):
        distill_from_config(config)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"step": 1}\n'
