"""The ``pool`` student-batch piece (datafree/batches/pool.py): which updates it serves, the reservoir's sample uniform over the whole run (not
the last images), pooled batches made of the generator's past images and relabelled by the teacher, the image
counter, resume exact, bad values refused."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from datafree import build
from datafree.batches import BatchContext, ImagePool, SameBatch, Synthesizer, pooled_updates
from datafree.config import ConfigError
from datafree.nets.features import NetOutput
from datafree.pipeline import distill_from_config
from tests.conftest import assert_same_weights, crash_then_resume, save_random_teacher, tiny_config


def test_the_pooled_updates_are_the_share_spread_over_the_extra_ones():
    assert pooled_updates(10, 0.5) == [2, 4, 6, 8]
    assert pooled_updates(10, 0.25) == [4, 8]
    assert pooled_updates(10, 1.0) == list(range(1, 10))
    assert pooled_updates(4, 0.5) == [2]
    assert pooled_updates(1, 1.0) == []  # update 0 is always G's own batch


def _pool(capacity: int, seed: int, share: float = 0.5, label=None) -> ImagePool:
    synthesize = SimpleNamespace(device=torch.device("cpu"), seed=seed, rank=0, batch_size=4, augmenter=None,
                                 layout=lambda x: x, label=label or (lambda x: NetOutput(x.flatten(1), {})))  # fmt: skip
    synthesize.relabelled = lambda images, rng: Synthesizer.relabelled(synthesize, images, rng)  # the real one
    pool = ImagePool(capacity, share)
    pool.attach(SameBatch(), BatchContext(synthesize, contextlib.nullcontext, student_steps=4))
    return pool


def _offer(pool: ImagePool, batches: int, size: int) -> None:
    for step in range(batches):  # image i of the run is the value i
        images = torch.arange(step * size, (step + 1) * size, dtype=torch.float32).view(size, 1, 1, 1)
        pool.remember(step, (images, None))


def test_a_pool_larger_than_the_run_keeps_every_image_in_order():
    pool = _pool(capacity=40, seed=0)
    _offer(pool, batches=4, size=8)
    assert pool.seen == 32 and pool.filled == 32
    assert pool.images[:32].flatten().tolist() == list(range(32))
    assert pool.images[32:].abs().sum() == 0  # the rest still empty


def test_the_reservoir_keeps_early_and_late_images_alike():
    # capacity 8 over 64 images: each image is kept with probability 8/64 = 0.125, whatever its step. A ring of the
    # last 8 would keep the first batch's never; a pool that stops at its capacity would keep only the first batch.
    first, last = 0, 0
    for seed in range(200):
        pool = _pool(capacity=8, seed=seed)
        _offer(pool, batches=8, size=8)
        kept = pool.images.flatten().long().tolist()
        assert len(set(kept)) == 8  # no image twice: each slot holds a different one
        first += sum(v < 8 for v in kept)
        last += sum(v >= 56 for v in kept)
    # 1,600 draws each: 0.125 +- 0.008 (one standard deviation)
    assert 0.095 < first / 1600 < 0.155 and 0.095 < last / 1600 < 0.155


def test_pooled_batches_are_past_images_relabelled_and_the_rest_goes_to_the_inner_piece():
    relabelled = []
    pool = _pool(capacity=16, seed=3, label=lambda x: (relabelled.append(x.clone()), NetOutput(2 * x.flatten(1), {}))[1])
    _offer(pool, batches=2, size=8)
    own = (torch.full((4, 1, 1, 1), -1.0), NetOutput(torch.zeros(4, 1), {}))
    assert pool(2, 0, own) is own and pool(2, 1, own) is own and pool(2, 3, own) is own  # not pooled: the inner piece
    images, targets = pool(2, 2, own)  # student_steps 4, share 0.5: update 2 is the pooled one
    assert images.shape == (4, 1, 1, 1) and set(images.flatten().tolist()) <= set(range(16))
    assert torch.equal(targets.logits, 2 * images.flatten(1)) and torch.equal(relabelled[-1], images)
    again, _ = pool(2, 2, own)
    assert torch.equal(again, images)  # drawn at (seed, rank, step, update): resume replays it


def _pool_config(tmp_path, name: str, **train):
    config = tiny_config(tmp_path, generator={"conditional": True},
                         train={"student_steps": 4, "fresh_batches": True, "fresh_batch_size": 8, "augment_flip": True,
                                "pool": 64, "output_dir": str(tmp_path / name), **train})  # fmt: skip
    save_random_teacher(config)
    return config


def test_the_run_counts_only_the_images_the_generator_made_and_trains_on_the_pool(tmp_path):
    config = _pool_config(tmp_path, "pool")
    trainer = build.trainer_from_config(config)
    assert isinstance(trainer.student_batches, ImagePool)
    assert trainer.images_per_step == 16 + 2 * 8  # G's 16 and two fresh batches of 8; update 2 comes from the pool
    seen = []
    trainer.student.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    for step in range(3):
        trainer.train_step(step)
    assert trainer.student_batches.seen == 3 * 16  # G's own batch of every step, nothing else
    stored = trainer.student_batches.images[:48]
    for step in range(3):
        pooled = seen[4 * step + 2]  # 8 images, each a stored one, maybe flipped
        assert len(pooled) == 8
        for image in pooled:
            match = [(image - s).abs().max() < 1e-6 or (image - s.flip(-1)).abs().max() < 1e-6 for s in stored[: 16 * (step + 1)]]
            assert any(match)


@pytest.mark.slow
def test_resume_is_exact(tmp_path, monkeypatch):
    whole, resumed = _pool_config(tmp_path, "whole"), _pool_config(tmp_path / "r", "resumed")
    distill_from_config(whole)
    crash_then_resume(resumed, monkeypatch)
    assert_same_weights(whole.train.output_dir, resumed.train.output_dir)


@pytest.mark.parametrize(("train", "match"), [
    ({"pool": -1}, '"pool": size is a number of images'),
    ({"pool": 64, "pool_share": 0.0}, '"pool": size is a number of images'),
    ({"pool": 64, "pool_share": 1.5}, '"pool": size is a number of images'),
    ({"pool": 64, "student_steps": 1}, "train.student_steps = 1 has none"),
    ({"pool": 64, "student_steps": 2, "transfer": "real"}, "'pool' needs the generator, but train.transfer = \"real\" has none"),
])  # fmt: skip
def test_bad_values_are_refused(tmp_path, train, match):
    with pytest.raises(ConfigError, match=match):
        build.check_batches(tiny_config(tmp_path, train=train))
