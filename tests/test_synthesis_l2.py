"""The synthesis-term seam: DeepInversion's L2 prior is one file (datafree/synthesis/l2.py) plus a registry line."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import save_random_teacher, tiny_config


def test_l2_prior_by_hand_and_by_name():
    from datafree.nets.features import NetOutput
    from datafree.synthesis import SynthBatch, create_synthesis_term, list_synthesis_terms

    assert "l2" in list_synthesis_terms()
    images = torch.tensor([[3.0, 4.0], [0.0, 1.0]]).view(2, 1, 1, 2)  # norms 5 and 1
    value = create_synthesis_term("l2")(SynthBatch(images, NetOutput(torch.zeros(2, 3))))
    assert value.item() == pytest.approx(3.0)


@pytest.mark.slow
def test_l2_prior_from_a_recipe_is_logged_and_moves_the_generator(tmp_path):
    from datafree import build
    from datafree.pipeline import distill_from_config
    from datafree.synthesis import SynthBatch

    config = tiny_config(tmp_path, synthesis={"l2": 0.5}, train={"steps": 2, "eval_every": 2})
    save_random_teacher(config)
    distill_from_config(config)
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert all(l["g_l2"] > 0 for l in lines)
    trainer = build.trainer_from_config(config)
    images, out = trainer.synthesize(0)
    prior = next(t for t in trainer.objective.terms if t.log_name == "g_l2")
    prior(SynthBatch(images, out)).backward()
    assert all(p.grad is not None for p in trainer.generator.parameters() if p.requires_grad)
