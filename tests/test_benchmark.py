"""runs/benchmark.py: every recipe runs end to end in smoke mode; results.json and report.md say what they must."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datafree.config import load_toml, validate

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "runs" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchmark = _load_benchmark()
SUMMARY_KEYS = {
    "recipe", "smoke", "dataset", "teacher_arch", "student_arch", "seeds", "teacher", "teacher_acc",
    "student_acc_final", "student_acc_best", "paper", "diff_vs_paper", "steps", "images_generated",
    "images_generated_total", "wall_time_s", "hardware", "runs", "mixed_precision", "num_processes",
}  # fmt: skip
RUN_FILES = ("report.md", "results.json", "metrics.jsonl", "accuracy.png", "losses.png", "teacher_view.png",
             "samples_over_training.png", "generator.safetensors", "student_best.safetensors")  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """ResNet-34 on a shared 2-core machine: one thread is 3x faster than two threads fighting other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check_run_report(run_dir: Path) -> None:
    for name in RUN_FILES:
        assert (run_dir / name).exists(), f"{run_dir}/{name} missing"
    text = (run_dir / "report.md").read_text()
    for needle in ("## Accuracy over training", "## Loss terms over training", "teacher confidence",
                   "effective classes", "## Synthetic samples over training", "samples/step_"):  # fmt: skip
        assert needle in text, needle
    assert len(list((run_dir / "samples").glob("step_*.png"))) >= 2  # grids at several points of training


@pytest.mark.e2e
@pytest.mark.parametrize("recipe", ["cifar10", "cifar100", "celeba", "fmnist", "cifar10_ternary"])
def test_smoke_runs_every_recipe_end_to_end(recipe, tmp_path):
    assert benchmark.main([recipe, "--smoke", "--output-root", str(tmp_path)]) == 0
    out = tmp_path / f"{recipe}-smoke"
    summary = json.loads((out / "results.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    recipe_config = load_toml(ROOT / "runs" / f"{recipe}.toml")
    # the run made exactly the smoke config's steps (4), each logged (log_every 1), and no more
    smoke = benchmark.smoke_config(recipe_config).train
    seed_run = json.loads((out / "seed_0" / "results.json").read_text())
    assert summary["steps"] == seed_run["steps"] == summary["runs"][0]["steps"] == smoke.steps == 4
    logged = [json.loads(l)["step"] for l in (out / "seed_0" / "metrics.jsonl").read_text().splitlines() if l.strip()]
    assert logged == list(range(1, smoke.steps + 1)) and smoke.log_every == 1
    assert summary["smoke"] is True and summary["dataset"] == f"fake (like {recipe_config.data.name})"
    assert (summary["teacher_arch"], summary["student_arch"]) == (recipe_config.teacher.arch, recipe_config.student.arch)
    assert summary["teacher"]["source"] == "trained" and summary["seeds"] == [0]
    assert summary["student_acc_final"]["values"] == [summary["runs"][0]["student_acc_final"]]
    assert summary["student_acc_best"]["mean"] >= summary["student_acc_final"]["mean"] - 1e-9
    fresh = any(piece.name == "fresh" for piece in recipe_config.batches)
    draws = recipe_config.train.student_steps if fresh else 1  # fresh batches count
    assert summary["images_generated"] == summary["steps"] * 8 * draws
    report = (out / "report.md").read_text()
    assert "Smoke run" in report and "**best**" in report and "**final**" in report
    paper = benchmark.PAPER[recipe]["student_acc"]
    if paper is None:  # Fashion-MNIST: no DAFL figure; ZSKD's is shown, labelled as another method
        assert "| n/a |" in report and "ZSKD" in report and summary["diff_vs_paper"]["best"] is None
    else:
        assert f"{100 * paper:.2f}%" in report
        assert summary["diff_vs_paper"]["best"] == pytest.approx(summary["student_acc_best"]["mean"] - paper)
    _check_run_report(out / "seed_0")


@pytest.mark.e2e
def test_mnist_cli_two_seeds_then_teacher_is_loaded(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "runs" / "benchmark.py"), "mnist", "--smoke", "--seeds", "2", "--output-root", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "report:" in done.stdout
    out = tmp_path / "mnist-smoke"
    summary = json.loads((out / "results.json").read_text())
    per_seed = [json.loads((out / f"seed_{k}" / "results.json").read_text()) for k in (0, 1)]
    finals = [r["student_acc_final"] for r in per_seed]
    assert summary["seeds"] == [0, 1] and summary["student_acc_final"]["values"] == finals
    assert summary["student_acc_final"]["mean"] == pytest.approx(statistics.fmean(finals))
    assert summary["student_acc_final"]["std"] == pytest.approx(statistics.stdev(finals))
    assert summary["images_generated_total"] == 2 * summary["images_generated"]
    assert summary["paper"]["student_acc"] == 0.982 and "98.20%" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "[seed_0/report.md](seed_0/report.md)" in report and "[seed_1/report.md](seed_1/report.md)" in report
    assert (out / "accuracy_seeds.png").exists()
    # the two seeds drew different synthetic batches from the same teacher
    metrics = [(out / f"seed_{k}" / "metrics.jsonl").read_text().splitlines()[0] for k in (0, 1)]
    assert json.loads(metrics[0])["g_total"] != json.loads(metrics[1])["g_total"]
    # a second invocation finds the teacher instead of retraining it
    assert benchmark.main(["mnist", "--smoke", "--output-root", str(tmp_path)]) == 0
    assert json.loads((out / "results.json").read_text())["teacher"]["source"] == "loaded"


def test_smoke_config_keeps_the_recipe_networks_on_stand_in_data():
    real = load_toml(ROOT / "runs" / "cifar100.toml")
    smoke = benchmark.smoke_config(real)
    validate(smoke)
    assert (smoke.data.name, smoke.data.like) == ("fake", "cifar100")
    assert (smoke.teacher.arch, smoke.student.arch, term(smoke, "onehot")) == ("resnet34", "resnet18", 0.5)
    assert smoke.train.steps <= 10 and smoke.runtime.mixed_precision == "no" and smoke.teacher_training.epochs == 1
    assert real.train.steps == 240000 and real.data.name == "cifar100"  # the recipe itself is untouched


@pytest.mark.parametrize("recipe,values", [
    ("mnist", {"train.steps": 24000, "train.batch_size": 512, "generator.lr": 0.2, "student.lr": 2e-3,
               "student.optimizer": "adam", "generator.latent_dim": 100, "synthesis.onehot": 1.0, "synthesis.entropy": 5.0,
               "synthesis.activation": 0.1, "generator.bn_eps": 0.8, "teacher_training.epochs": 10, "teacher_training.batch_size": 256}),
    ("cifar10", {"train.steps": 240000, "train.batch_size": 1024, "generator.lr": 0.02, "student.lr": 0.1,
                 "student.optimizer": "sgd", "student.weight_decay": 5e-4, "student.schedule": "step",
                 "student.milestones": [0.4, 0.8], "generator.latent_dim": 1000, "synthesis.onehot": 0.05,
                 "synthesis.activation": 0.01, "synthesis.entropy": 5.0,
                 "teacher.arch": "resnet34", "student.arch": "resnet18", "teacher_training.epochs": 200}),
    ("cifar100", {"train.steps": 240000, "synthesis.onehot": 0.5, "synthesis.entropy": 20.0, "synthesis.activation": 0.1,
                  "data.name": "cifar100", "generator.latent_dim": 1000}),
    ("celeba", {"teacher.arch": "alexnet", "student.arch": "alexnet_half", "data.name": "celeba", "synthesis.onehot": 2.0,
                "synthesis.entropy": 10.0, "generator.lr": 0.002, "student.lr": 1e-4, "train.batch_size": 512}),
])  # fmt: skip
def test_recipes_hold_the_published_values_and_cite_every_value(recipe, values):
    path = ROOT / "runs" / f"{recipe}.toml"
    config = load_toml(path)
    validate(config)
    for key, expected in values.items():
        section, name = key.split(".")
        value = term(config, name) if section == "synthesis" else getattr(getattr(config, section), name)
        assert value == expected, key
    lines = path.read_text().splitlines()
    uncited = [line for i, line in enumerate(lines) if re.match(r"^\s*\w+\s*=", line) and "#" not in line
               and not (line.startswith("name =") and lines[i - 1].startswith("[["))]  # a term's name is no value
    assert not uncited, f"values without a source comment in {path.name}: {uncited}"
    assert recipe in benchmark.PAPER and benchmark.PAPER[recipe]["student_acc"] is not None


def term(config, name: str) -> float:
    """The weight of the recipe's synthesis term ``name``."""
    return next(t.weight for t in config.synthesis if t.name == name)


@pytest.mark.e2e
def test_unknown_recipe_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["imagenet", "--smoke", "--output-root", str(tmp_path)])
    assert "mnist, fmnist, cifar10, cifar100, celeba" in capsys.readouterr().err


def test_a_found_teacher_trained_otherwise_than_the_recipe_says_is_named(tmp_path, capsys):
    """A teacher another command left at the recipe's path (here 1 epoch where fmnist.toml trains 20) is loaded, as
    asked, but the run says so and how to retrain it; a teacher that matches the recipe gets no note."""
    config = load_toml(ROOT / "runs" / "fmnist.toml")
    config.teacher.checkpoint = str(tmp_path / "teacher.safetensors")
    (tmp_path / "teacher.safetensors").write_bytes(b"")  # get_teacher reads only the record beside it
    (tmp_path / "teacher.json").write_text(json.dumps({"teacher_acc": 0.56, "epochs": 1}))
    assert benchmark.get_teacher(config, retrain=False) == {"source": "loaded", "checkpoint": config.teacher.checkpoint, "epochs": 1}
    out = capsys.readouterr().out
    assert f"trains its teacher {config.teacher_training.epochs} epochs, the one at {config.teacher.checkpoint} was trained 1" in out
    assert "--retrain-teacher" in out
    (tmp_path / "teacher.json").write_text(json.dumps({"teacher_acc": 0.9, "epochs": config.teacher_training.epochs}))
    benchmark.get_teacher(config, retrain=False)
    assert "note:" not in capsys.readouterr().out
    (tmp_path / "teacher.json").unlink()  # no record: nothing to compare, no note
    benchmark.get_teacher(config, retrain=False)
    assert "note:" not in capsys.readouterr().out
    (tmp_path / "teacher.json").write_text("{not json")  # a record that is not one: described as unknown, no traceback
    assert benchmark.get_teacher(config, retrain=False)["epochs"] is None
    assert "note:" not in capsys.readouterr().out


def test_make_demo_names_a_found_teacher_trained_otherwise(tmp_path, capsys, monkeypatch):
    """runs/examples/demo.py (what `make demo` runs) says the same as the benchmark when it finds such a teacher; the
    distillation itself is stopped right after (its own tests are elsewhere)."""
    import datafree.pipeline
    import datafree.supervised

    spec = importlib.util.spec_from_file_location("demo", ROOT / "runs" / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    (tmp_path / "teacher.safetensors").write_bytes(b"")
    (tmp_path / "teacher.json").write_text(json.dumps({"teacher_acc": 0.56, "epochs": 1}))

    def stop(config):
        raise ValueError("stopped after the teacher step")

    monkeypatch.setattr(datafree.supervised, "ensure_for_recipe", lambda config: None)
    monkeypatch.setattr(datafree.pipeline, "distill_from_config", stop)
    assert demo.main(["--teacher.checkpoint", str(tmp_path / "teacher.safetensors")]) == 2
    captured = capsys.readouterr()
    assert "epochs, the one at" in captured.out and "was trained 1; pass --retrain-teacher" in captured.out
    assert "stopped after the teacher step" in captured.err
