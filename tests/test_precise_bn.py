"""The precise_bn callback (datafree/callbacks/precise_bn.py): the statistics by hand, the generator's buffers put back, training
untouched, the saved student's statistics those of the final generator's un-augmented images (with and without a
test set, with the EMA), resume exact, a bad value refused."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.optim.swa_utils import update_bn

from datafree import build
from datafree.io.checkpoint import load_weights
from datafree.config import ConfigError, validate
from datafree.pipeline import distill_from_config
from datafree.callbacks.precise_bn import DRAW, PreciseBatchNorm
from tests.conftest import assert_same_weights, crash_then_resume, save_random_teacher, tiny_config


def test_statistics_are_the_plain_average_over_the_batches_and_the_generators_buffers_come_back():
    # channel 0: batch 0 = 0, 1, 2, 3 (mean 1.5, unbiased var 5/3), batch 1 = 10, 10, 10, 14 (mean 11, var 4)
    # channel 1: batch 0 = 2, 2, 2, 2 (mean 2, var 0),         batch 1 = 0, 0, 4, 4 (mean 2, var 16/3)
    batches = [torch.tensor([[0.0, 2], [1, 2], [2, 2], [3, 2]]), torch.tensor([[10.0, 0], [10, 0], [10, 4], [14, 4]])]
    generator = nn.BatchNorm1d(2).train()  # a generator's BatchNorm: every forward moves its running statistics
    asked = []

    def images(step, draw, size=None, rank=None):
        asked.append((step, draw, rank))
        generator(torch.randn(8, 2))
        return batches[draw - DRAW].view(4, 2, 1, 1), None

    student = nn.Sequential(nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    student[0].running_mean.fill_(-7.0)
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    loop = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m: m, autocast=contextlib.nullcontext),
                           shipped_student=student, progress=SimpleNamespace(step=12), generator=generator,
                           synthesize=SimpleNamespace(images=images, layout=lambda x: x))  # fmt: skip
    PreciseBatchNorm(2).on_evaluate(loop)
    assert asked == [(12, DRAW, 0), (12, DRAW + 1, 0)]  # the step's own draws, rank 0's on every rank
    torch.testing.assert_close(student[0].running_mean, torch.tensor([6.25, 2.0]))
    torch.testing.assert_close(student[0].running_var, torch.tensor([(5 / 3 + 4) / 2, (0 + 16 / 3) / 2]))
    assert student[0].momentum == 0.1 and student.training  # update_bn puts both back
    for key, value in generator.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(ValueError, match="batches is a number of generator batches"):
        PreciseBatchNorm(0)


def _bn_config(tmp_path, precise_bn: int, **train):
    """The tiny recipe with a BatchNorm student, a conditional generator, flipped / shifted fresh batches: what the
    default gives a ResNet student (without the blends, whose partners a fresh trainer would not know)."""
    config = tiny_config(tmp_path, student={"arch": "resnet8_narrow"}, generator={"conditional": True},
                         train={"precise_bn": precise_bn, "student_steps": 2, "fresh_batches": True, "augment_flip": True,
                                "augment_shift": 2, "output_dir": str(tmp_path / f"run{precise_bn}"), **train})  # fmt: skip
    save_random_teacher(config)
    return config


def _recomputed(config, net: nn.Module, generator: nn.Module, step: int, batches: int) -> dict:
    """The BatchNorm buffers of ``net`` recomputed by hand from ``generator``'s un-augmented images at ``step``."""
    trainer = build.trainer_from_config(config)
    trainer.accelerator.unwrap_model(trainer.generator).load_state_dict(generator.state_dict())
    with torch.no_grad():
        update_bn([trainer.synthesize.images(step, DRAW + i, rank=0)[0] for i in range(batches)], net)
    return {k: v for k, v in net.state_dict().items() if "running" in k}


@pytest.mark.slow
def test_training_is_untouched_and_the_saved_statistics_are_the_final_generators_unaugmented_images(tmp_path):
    off, on = _bn_config(tmp_path, 0), _bn_config(tmp_path, 3)
    distill_from_config(off)
    results = distill_from_config(on)
    a, b = load_file(f"{off.train.output_dir}/student_last.safetensors"), load_file(f"{on.train.output_dir}/student_last.safetensors")
    running = {k for k in a if "running" in k}
    counters = {k for k in a if k.endswith("num_batches_tracked")}  # update_bn counts its own batches
    assert running and all(torch.equal(a[k], b[k]) for k in set(a) - running - counters)  # training never reads them
    assert all(not torch.equal(a[k], b[k]) for k in running if k.endswith("running_var"))
    assert_same_weights(off.train.output_dir, on.train.output_dir, names=("generator.safetensors",))
    spec = build.image_spec(on)
    student = load_weights(build.build_net("resnet8_narrow", spec), f"{on.train.output_dir}/student_last.safetensors")
    generator = load_weights(build.build_generator(on, spec), f"{on.train.output_dir}/generator.safetensors")
    loaded = {k: v.clone() for k, v in student.state_dict().items()}
    expected = _recomputed(on, student, generator, 6, 3)  # the saved weights, their statistics recomputed
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=1e-5, atol=1e-6, msg=key)
    lines = [json.loads(l) for l in open(f"{on.train.output_dir}/metrics.jsonl")]
    assert results["student_acc_final"] == lines[-1]["student_acc"]  # evaluated after the recomputation


@pytest.mark.slow
def test_without_a_test_set_the_end_recomputes_the_emas_average_which_the_student_then_gets(tmp_path):
    config = _bn_config(tmp_path, 2, ema_decay=0.5)
    trainer = build.trainer_from_config(config)  # no eval set: no evaluation ever asks for the statistics
    Path(config.train.output_dir).mkdir(parents=True)
    trainer.fit()
    average = trainer.callbacks[[type(c).__name__ for c in trainer.callbacks].index("EMA")].average.module
    generator = trainer.accelerator.unwrap_model(trainer.generator)
    fresh = build.build_net("resnet8_narrow", build.image_spec(config))
    fresh.load_state_dict(average.state_dict())
    expected = _recomputed(config, fresh, generator, 6, 2)
    for key, value in expected.items():
        torch.testing.assert_close(average.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)
        assert torch.equal(trainer.student_net.state_dict()[key], average.state_dict()[key]), key


@pytest.mark.slow
def test_resume_is_exact(tmp_path, monkeypatch):
    whole, resumed = _bn_config(tmp_path, 2), _bn_config(tmp_path / "r", 2)
    distill_from_config(whole)
    crash_then_resume(resumed, monkeypatch)
    assert_same_weights(whole.train.output_dir, resumed.train.output_dir)


def test_a_negative_count_is_refused(tmp_path):
    with pytest.raises(ConfigError, match='"precise_bn": batches is a number of generator batches'):
        build.check_callbacks(tiny_config(tmp_path, train={"precise_bn": -1}), 10)  # the old spelling, translated
