"""The ``ema_generator`` student-batch piece (MAD's moving average of the generator; datafree/batches/ema_generator.py):
the average follows G~ <- d G~ + (1 - d) G, the served updates train on its images relabelled by the teacher, resume
is exact, bad values are refused."""

from __future__ import annotations

import pytest
import torch

from datafree import build
from datafree.batches import EMAGeneratorBatches
from datafree.batches.ema_generator import EMA_DRAW
from datafree.config import ConfigError
from tests.conftest import assert_same_weights, crash_then_resume, save_random_teacher, tiny_config

PIECES = [{"name": "fresh", "params": {"size": 0}}, {"name": "ema_generator", "params": {"decay": 0.5, "share": 0.5}}]


def _config(tmp_path, name: str):
    config = tiny_config(tmp_path, generator={"conditional": True}, batches=PIECES,
                         train={"student_steps": 4, "output_dir": str(tmp_path / name)})  # fmt: skip
    save_random_teacher(config)
    return config


def test_the_average_follows_the_generator_and_serves_its_share_of_the_updates(tmp_path):
    trainer = build.trainer_from_config(_config(tmp_path, "run"))
    chain = trainer.student_batches
    assert isinstance(chain, EMAGeneratorBatches) and chain.from_average == {2}  # half of updates 1..3, spread
    seen = []
    trainer.student.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    generator = trainer.generator
    weights = lambda: {k: v.detach().clone() for k, v in generator.named_parameters()}  # noqa: E731  (BatchNorm's
    # running statistics move with every forward, fresh batches' too: the average takes them as they are)
    made_step_0 = weights()
    trainer.train_step(0)
    made_step_1 = weights()
    average = chain.average.module.state_dict()
    for key, value in made_step_0.items():  # after step 0 the average IS the generator that made its batch
        torch.testing.assert_close(average[key].float(), value.float(), rtol=0, atol=0)
    trainer.train_step(1)
    average = chain.average.module.state_dict()
    moved = 0
    for key, value in made_step_1.items():  # then d * old + (1 - d) * new, d = 0.5
        torch.testing.assert_close(average[key], 0.5 * made_step_0[key] + 0.5 * value)
        moved += not torch.equal(made_step_0[key], value)
    assert moved > 0  # the generator did change between the steps
    # update 2 of step 1 trained on the average's images: rebuild them from the same latents and labels
    s = trainer.synthesize
    z = s.sample_latent(1, draw=EMA_DRAW + 2, size=16)  # 16 images >= 10 classes: labels i mod K, no rotation
    with torch.no_grad():
        images = chain.average.module(z, s.make_labels(len(z), s.device, s.rng))
    served = seen[4 * 1 + 2]
    assert served.shape == images.shape == (16, 1, 32, 32)
    torch.testing.assert_close(served, images, rtol=0, atol=1e-6)  # the tiny recipe has no augment piece
    assert (seen[4 * 1 + 1] - images).abs().max() > 0.1  # fresh update 1 came from the generator itself


@pytest.mark.slow
def test_resume_is_exact(tmp_path, monkeypatch):
    whole, resumed = _config(tmp_path, "whole"), _config(tmp_path / "r", "resumed")
    from datafree.pipeline import distill_from_config

    distill_from_config(whole)
    crash_then_resume(resumed, monkeypatch)
    assert_same_weights(whole.train.output_dir, resumed.train.output_dir)


@pytest.mark.parametrize(("params", "train", "match"), [
    ({"decay": 1.0}, {"student_steps": 2}, "decay in \\(0, 1\\)"),
    ({"share": 0.0}, {"student_steps": 2}, "share of the extra student updates in \\(0, 1\\]"),
    ({}, {"student_steps": 1}, "train.student_steps = 1 has none"),
])  # fmt: skip
def test_bad_values_are_refused(tmp_path, params, train, match):
    config = tiny_config(tmp_path, batches=[{"name": "ema_generator", "params": params}], train=train)
    with pytest.raises(ConfigError, match=match):
        build.check_batches(config)
