"""train.transfer = "real": the same trainer, the student's batches drawn from real training images, no generator step."""

from __future__ import annotations

import json

import torch

from datafree import build
from datafree.data import load_tensors
from datafree.pipeline import distill_from_config
from tests.conftest import save_random_teacher, tiny_config


def test_student_batches_are_real_images_and_the_generator_never_moves(tmp_path):
    config = tiny_config(tmp_path, train={"transfer": "real", "student_steps": 3, "fresh_batches": True},
                         synthesis=[{"name": "onehot"}, {"name": "entropy", "weight": 5.0}])  # fmt: skip
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    d = config.data
    real = load_tensors(d.name, root=d.root, train=True, like=d.like, fake_size=d.fake_size).tensors[0].flatten(1)
    seen = []
    hook = trainer.student_net.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    generator = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    try:
        for step in range(2):
            trainer.train_step(step)
    finally:
        hook.remove()
    assert len(seen) == 2 * 3  # every student update: the first batch and two fresh ones per step
    for batch in seen:
        distance = torch.cdist(batch.flatten(1), real, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
        assert distance.max() < 1e-4  # each image is a training image
    assert not torch.equal(seen[0], seen[1])  # fresh draws differ
    assert all(torch.equal(v, trainer.generator.state_dict()[k]) for k, v in generator.items())
    assert not trainer.opt_g.state  # the generator's optimizer never stepped
    assert len(trainer.objective.terms) == 0  # the recipe's generator terms are not built


def test_a_real_transfer_run_says_what_it_read_and_ships_no_generator(tmp_path):
    config = tiny_config(tmp_path, train={"transfer": "real", "steps": 2, "eval_every": 2})
    save_random_teacher(config)
    results = distill_from_config(config)
    out = tmp_path / "run"
    assert results["transfer"] == "real" and "training images" in results["uses"][0]
    assert not (out / "generator.safetensors").exists() and (out / "student_last.safetensors").exists()
    assert "real training images drawn" in (out / "report.md").read_text()
    assert json.loads((out / "config.json").read_text())["train"]["transfer"] == "real"
