"""A recipe shrunk to a smoke run: its networks on generated stand-in data, a budget of seconds. It proves the chain
runs (teacher training, distillation, report) without real data; its numbers mean nothing."""

from __future__ import annotations

import copy

from datafree.config import Config
from datafree.config.spellings import translate_batch_keys

SMOKE_FAKE_IMAGES = 64  # per split: the teacher trains one epoch on these, students are evaluated on the others


def smoke_config(config: Config) -> Config:
    """The recipe's networks on generated stand-in data with a budget of seconds: proves the chain runs."""
    c = copy.deepcopy(config)
    like = c.data.like if c.data.name == "fake" else c.data.name
    c.data.name, c.data.like, c.data.fake_size, c.data.eval_batch_size = "fake", like, SMOKE_FAKE_IMAGES, SMOKE_FAKE_IMAGES
    c.data.num_workers = 0
    c.teacher_training.epochs, c.teacher_training.batch_size, c.teacher_training.route_every = 1, 16, 1
    c.teacher.checkpoint = ""
    c.generator.width, c.generator.latent_dim = 16, min(c.generator.latent_dim, 64)
    t = c.train
    t.steps, t.batch_size, t.eval_every, t.log_every, t.sample_every, t.checkpoint_every = 4, 8, 2, 1, 2, 4
    c.batches = translate_batch_keys(c.batches, {"fresh_batch_size": 0})  # the student's fresh batches shrink with
    # the generator's (a preset's 64 would not)
    t.trackers = []
    c.runtime.mixed_precision, c.runtime.channels_last, c.runtime.compile = "no", False, False
    return c
