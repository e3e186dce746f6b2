"""Shared fixtures: a tiny recipe on generated data, and a fresh Accelerate state per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps process-global state; each test builds its own Accelerator from scratch."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def tiny_config(out: Path, **sections):
    """A recipe that runs in seconds: fake Fashion-MNIST-shaped data, a narrow generator, a few steps."""
    from datafree.config import from_dict

    raw = {
        "name": "tiny",
        "preset": "dafl",  # the dataclass defaults: tests set what they need on top
        "data": {"name": "fake", "like": "fashion-mnist", "fake_size": 256, "eval_batch_size": 128, "root": str(out / "data")},
        "teacher": {"arch": "lenet5", "checkpoint": str(out / "teacher.safetensors")},
        "teacher_training": {"epochs": 1, "batch_size": 64},
        "student": {"arch": "lenet5_half", "lr": 0.002},
        "generator": {"width": 16, "latent_dim": 16},
        "train": {"output_dir": str(out / "run"), "steps": 6, "batch_size": 16, "eval_every": 3, "log_every": 1,
                  "sample_every": 3, "checkpoint_every": 3},
        "runtime": {"mixed_precision": "no", "channels_last": False},
        "distill": [{"name": "kd"}],
    }
    extra_terms = sections.pop("synthesis", None)
    for section, values in sections.items():
        raw[section] = values if section in ("distill", "batches", "callbacks") else {**raw.get(section, {}), **values}
    config = from_dict(raw)
    if isinstance(extra_terms, dict):  # {term: weight, "term.param": value} on top of DAFL's three terms
        from datafree.config import set_synthesis_value

        for key, value in extra_terms.items():
            set_synthesis_value(config, key, value)
    elif extra_terms is not None:
        config.synthesis = from_dict({"synthesis": extra_terms}).synthesis
    return config


def save_random_teacher(config, seed: int = 0) -> None:
    """An untrained but fixed teacher checkpoint: the loop's mechanics do not need a good teacher."""
    from datafree import build
    from datafree.io.checkpoint import save_weights

    torch.manual_seed(seed)
    spec = build.image_spec(config)
    net = build.build_net(config.teacher.arch, spec)
    save_weights(net, config.teacher_checkpoint, {"arch": config.teacher.arch, "num_classes": spec.num_classes})


def finished_conditional_run(out: Path, student: str) -> Path:
    """A 2-step conditional run on a random teacher, finished: its folder (``out/run``), as the diagnostics read it."""
    from datafree.build import reset_accelerate
    from datafree.pipeline import distill_from_config

    config = tiny_config(out, student={"arch": student}, generator={"conditional": True},
                         train={"steps": 2, "eval_every": 2, "sample_every": 2, "checkpoint_every": 2})  # fmt: skip
    save_random_teacher(config)
    distill_from_config(config)
    reset_accelerate()
    return out / "run"


@pytest.fixture
def tiny(tmp_path):
    config = tiny_config(tmp_path)
    save_random_teacher(config)
    return config


def interrupt_after(monkeypatch, calls: int) -> None:
    """Make DataFreeTrainer.train_step raise KeyboardInterrupt on call ``calls + 1``: a crash mid-run."""
    from datafree.trainer import DataFreeTrainer

    original = DataFreeTrainer.train_step
    count = {"n": 0}

    def step(self, step):
        count["n"] += 1
        if count["n"] > calls:
            raise KeyboardInterrupt("simulated crash")
        return original(self, step)

    monkeypatch.setattr(DataFreeTrainer, "train_step", step)


def crash_then_resume(config, monkeypatch, calls: int = 4) -> None:
    """Run ``config``, crash it during step ``calls + 1`` (after the checkpoint of step 3 with the tiny recipe),
    then resume it to the end: what every resume test compares with an uninterrupted run."""
    from datafree.build import reset_accelerate
    from datafree.pipeline import distill_from_config

    with monkeypatch.context() as patch:
        interrupt_after(patch, calls)
        with pytest.raises(KeyboardInterrupt):
            distill_from_config(config)
    reset_accelerate()
    distill_from_config(config, resume=True)


def assert_same_weights(dir_a, dir_b, names=("student_last.safetensors", "generator.safetensors")) -> None:
    """The named safetensors files of two run folders hold bit-identical tensors."""
    from safetensors.torch import load_file

    for name in names:
        a, b = load_file(f"{dir_a}/{name}"), load_file(f"{dir_b}/{name}")
        assert set(a) == set(b), name
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}:{key}")


def asked_and_targeted(tmp_path, generator: dict, steps: int = 3):
    """A conditional run with two fresh batches of 8 per step: (trainer, the labels the generator was asked for at
    every call, the labels the objective targeted at every step), after ``steps`` steps."""
    from datafree import build

    config = tiny_config(tmp_path, generator={"conditional": True, **generator},
                         train={"student_steps": 3, "fresh_batches": True, "fresh_batch_size": 8})  # fmt: skip
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    asked, targeted = [], []
    trainer.generator.register_forward_pre_hook(lambda module, args: asked.append(args[1].clone()))
    trainer.objective.register_forward_pre_hook(lambda module, args: targeted.append(args[0].labels.clone()))
    for step in range(steps):
        trainer.train_step(step)
    return trainer, asked, targeted


def recorded(path: Path, script: str, *absent: Path) -> dict:
    """A benchmark's ``--record`` file, read back by datafree.io.results.load, its provenance checked (the command that
    ran ``runs/<script>.py``, commit, date, machine with its thread count); the table itself holds none of the
    ``absent`` folders' paths (nor the checkout's): figures and settings only."""
    import json
    import re

    from datafree.io.results import load

    data = load(path)
    p = data["provenance"]
    assert p["command"].startswith(f"python runs/{script}.py ") and "--record" in p["command"], p["command"]
    assert p["commit"] and re.fullmatch(r"\d{4}-\d{2}-\d{2}", p["date"]), p
    assert isinstance(p["hardware"]["threads"], int) and p["hardware"]["threads"] >= 1, p["hardware"]
    table = json.dumps({k: v for k, v in data.items() if k not in ("provenance", "earlier")})  # earlier: provenances too
    for folder in (ROOT, *absent):
        assert str(folder) not in table, f"{folder} in the recorded table"
    return data


# ---- networks and runs several test modules share ----------------------------------------------------------------
class BNTeacher(nn.Module):
    """A user's VGG-style BatchNorm CNN, not in the registry."""

    def __init__(self, classes: int = 4):
        super().__init__()
        block = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())  # noqa: E731
        self.features = nn.Sequential(block(1, 8), nn.MaxPool2d(2), block(8, 16), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def randomized(net: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters far from their defaults (a fold of defaults proves nothing)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(1 + 0.5 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.3 * torch.randn(n, generator=g))
    return net.eval()


def bn_teacher_config(tmp_path, **train):
    """A tiny run whose teacher is a BatchNorm VGG with statistics far from their defaults (what folds prove on)."""
    from datafree.io.checkpoint import save_weights
    from datafree import build

    config = tiny_config(tmp_path, teacher={"arch": "vgg_bn_small"}, student={"arch": "vgg_bn_small", "lr": 0.002},
                         train={"student_steps": 2, "fresh_batches": True, **train})  # fmt: skip
    spec = build.image_spec(config)
    torch.manual_seed(0)
    net = randomized(build.build_net("vgg_bn_small", spec))
    save_weights(net, config.teacher_checkpoint, {"arch": "vgg_bn_small", "num_classes": spec.num_classes})
    return config


def folded_feature_run(tmp_path, distill: list[dict], taps: list[str]):
    """A loop whose student losses read ``taps``: its labeller must be the folded copy, and the tapped features
    of a fresh batch must equal the hooked teacher's (up to rounding). Returns the trainer."""
    from datafree import build
    from datafree.teachers.base import FoldedSource

    config = bn_teacher_config(tmp_path)
    config.distill = tiny_config(tmp_path, distill=distill).distill
    trainer = build.trainer_from_config(config)
    assert isinstance(trainer.synthesize.labeller, FoldedSource)
    images, targets = trainer.student_batches(0, 1, trainer.synthesize(0))
    with torch.no_grad():
        exact = trainer.synthesize.student_teacher(images)
    for name in taps:
        want = exact.features[name]
        assert want.abs().max() > 0.1  # a real map, not zeros on both sides
        torch.testing.assert_close(targets.features[name], want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    return trainer
