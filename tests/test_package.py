"""The `datafree` command with its recipes inside, a model card beside every student, load_student, and the public
helpers' errors on hostile files."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from datafree.io.checkpoint import CheckpointError, convert_torch_checkpoint


@pytest.mark.e2e
def test_the_datafree_command_lists_its_subcommands_and_shipped_recipes(capsys):
    from datafree.cli.main import main
    from datafree.recipes import list_recipes, recipe_path

    assert main([]) == 0 and "subcommands:" in capsys.readouterr().out
    assert main(["recipes"]) == 0
    listed = capsys.readouterr().out
    assert "fmnist" in listed and set(list_recipes()) >= {"fmnist", "zoo", "cifar10"}
    assert recipe_path("fmnist").read_text() == (recipe_path("runs/fmnist.toml")).read_text()
    assert main(["nope"]) == 2 and "unknown subcommand 'nope'" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="shipped: celeba, cifar10"):
        recipe_path("no_such_recipe")


def test_every_subcommand_answers_help_under_its_own_name(capsys):
    """Derived from the subcommand table: search and feed (once scripts in runs/) are subcommands like the rest."""
    from datafree.cli.main import SUBCOMMANDS, main

    assert {"train", "teacher", "search", "feed"} <= set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0, name
        assert f"datafree {name}" in capsys.readouterr().out, name


@pytest.mark.slow
def test_datafree_train_by_recipe_name_writes_a_model_card_and_load_student_rebuilds_it(tmp_path, monkeypatch):
    from datafree import build, load_student
    from datafree.io.checkpoint import load_weights, save_weights
    from datafree.cli.main import main
    from datafree.config import load_toml

    monkeypatch.chdir(tmp_path)  # any folder: the recipe comes from the package
    config = load_toml("fmnist")
    spec = build.image_spec(config)
    torch.manual_seed(0)
    save_weights(build.build_net("lenet5", spec), tmp_path / "teacher.safetensors", {"arch": "lenet5", "num_classes": 10})
    argv = ["train", "--recipe", "fmnist", "--data.name", "fake", "--data.fake_size", "64", "--data.eval_batch_size", "64",
            "--teacher.checkpoint", str(tmp_path / "teacher.safetensors"), "--train.steps", "2", "--train.max_minutes", "0",
            "--train.batch_size", "16", "--train.fresh_batch_size", "16", "--train.student_steps", "2", "--train.eval_every",
            "2", "--train.precise_bn", "2", "--train.output_dir", "run"]  # fmt: skip
    assert main(argv) == 0
    card = (tmp_path / "run" / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: lenet5_half distilled from lenet5") and "no training image was used" in card
    assert card.count("\n| ") >= 11  # the per-class table: a header and ten classes
    student = load_student(tmp_path / "run")
    again = load_weights(build.build_net("lenet5_half", spec), tmp_path / "run" / "student_last.safetensors").eval()
    x = torch.randn(4, 1, 32, 32)
    assert not student.training and torch.equal(student(x), again(x))


@pytest.mark.e2e
def test_accelerate_launch_runs_the_datafree_command_as_a_module(tmp_path):
    """``accelerate launch -m datafree train ...``: the documented way to run the command under Accelerate."""
    import os
    import subprocess
    import sys

    from datafree import build
    from datafree.config import load_toml
    from datafree.io.checkpoint import save_weights

    spec = build.image_spec(load_toml("fmnist"))
    torch.manual_seed(0)
    save_weights(build.build_net("lenet5", spec), tmp_path / "teacher.safetensors", {"arch": "lenet5", "num_classes": 10})
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1", "--cpu",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "datafree", "train", "--recipe", "fmnist",
           "--data.name", "fake", "--data.fake_size", "64", "--data.eval_batch_size", "64",
           "--teacher.checkpoint", str(tmp_path / "teacher.safetensors"), "--train.steps", "2", "--train.max_minutes", "0",
           "--train.batch_size", "16", "--batches.fresh.size", "16", "--train.student_steps", "2",
           "--train.eval_every", "2", "--callbacks.precise_bn.batches", "2", "--train.output_dir", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "MODEL_CARD.md").exists() and (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_load_student_of_a_users_own_module_says_how_to_load_it(tmp_path):
    from torch import nn

    from datafree import distill_datafree, load_student
    from datafree.config import ConfigError

    teacher = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    student = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4))
    distill_datafree(teacher, student, image_size=16, channels=1, num_classes=4, mean=(0.3,), std=(0.35,),
                     train={"steps": 1, "batch_size": 8, "eval_every": 1, "output_dir": str(tmp_path / "run")})  # fmt: skip
    assert (tmp_path / "run" / "MODEL_CARD.md").exists()
    with pytest.raises(ConfigError, match="load_weights"):
        load_student(tmp_path / "run")


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_convert_torch_checkpoint_refuses_code_in_the_pickle_with_its_own_error(tmp_path, capsys):
    hostile = tmp_path / "hostile.pt"
    torch.save({"weight": torch.zeros(2), "x": Payload()}, hostile)
    with pytest.raises(CheckpointError, match="not a weights-only torch checkpoint") as err:
        convert_torch_checkpoint(hostile, tmp_path / "out.safetensors")
    assert "\x1b[" not in str(err.value) and "this ran" not in capsys.readouterr().out
    (tmp_path / "raw.pt").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError):
        convert_torch_checkpoint(tmp_path / "raw.pt", tmp_path / "out.safetensors")
    torch.save({"state_dict": {"w": torch.ones(3)}}, tmp_path / "good.pt")
    convert_torch_checkpoint(tmp_path / "good.pt", tmp_path / "good.safetensors")
    assert (tmp_path / "good.safetensors").exists()


def test_statistics_helpers_on_a_corrupt_file_raise_datafrees_error(tmp_path):
    from datafree.nets.feature_stats import has_class_stats, has_outputs

    bad = tmp_path / "t.stats.safetensors"
    bad.write_bytes(b"\xff" * 64)
    for helper in (has_class_stats, has_outputs):
        with pytest.raises(CheckpointError, match="unreadable or corrupt"):
            helper(bad)
    save_file({"a/mean": torch.zeros(2), "a/var": torch.ones(2)}, str(tmp_path / "ok.safetensors"))
    assert has_class_stats(tmp_path / "ok.safetensors") is False


def test_modules_that_moved_into_folders_keep_their_old_import_paths():
    """datafree.checkpoint -> datafree.io.checkpoint and the rest (datafree/_moved.py): the old path gives the same
    module object, so user code and patches written against it still work."""
    import importlib

    from datafree._moved import MOVED

    assert len(MOVED) >= 19
    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    from datafree.feature_stats import record_teacher_stats  # the README's import, at its old path
    from datafree.nets.feature_stats import record_teacher_stats as at_new_place

    assert record_teacher_stats is at_new_place
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("datafree.no_such_module")  # the finder answers only for the moved names


def test_the_docs_list_every_error_type_datafree_raises():
    """docs/running.md's Errors table names each of datafree's own exception types (those not derived from another
    of them: a subclass is caught as its parent), with where to import it."""
    import importlib
    import inspect
    import pkgutil
    from pathlib import Path

    import datafree

    defined = set()
    for info in pkgutil.walk_packages(datafree.__path__, "datafree."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        defined |= {(obj, module.__name__) for obj in vars(module).values()
                    if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == module.__name__}
    own = {cls for cls, _ in defined}
    defined = {(cls.__name__, where) for cls, where in defined if not any(base in own for base in cls.__mro__[1:])}
    assert {name for name, _ in defined} >= {"ConfigError", "CheckpointError", "DataMissingError", "NonFiniteLossError"}
    page = (Path(__file__).resolve().parents[1] / "docs" / "running.md").read_text()
    table = page[page.index("## Errors"):page.index("## Resume")]
    for name, where in defined:
        row = next((line for line in table.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"docs/running.md's Errors table has no row for {name} ({where})"
        imported = row.rsplit("`", 2)[-2]
        assert getattr(importlib.import_module(imported), name).__module__ == where, (name, imported)
