"""The blend callback (datafree/callbacks/blend.py): partner probabilities and the neighbour update by hand, the blended
targets' shape, the conditional generator's blended embedding, the one-hot term against soft targets, the loop
asking for and targeting the same blends, resume exact, bad values refused."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from datafree.callbacks import ClassBlend
from datafree.nets.features import NetOutput
from datafree.synthesis import SynthBatch
from datafree.synthesis.dafl import one_hot_loss
from generators.conditional import ClassConditional, balanced_labels
from tests.conftest import asked_and_targeted, assert_same_weights, crash_then_resume, save_random_teacher, tiny_config

_LOOP = SimpleNamespace(accelerator=SimpleNamespace(num_processes=1))


def _balanced(k: int):
    return lambda n, device, rng: balanced_labels(n, k, device)


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_partners_follow_the_teachers_leftover_probability_as_the_docstring_computes():
    blend = ClassBlend(0.5, num_classes=3, base=_balanced(3))
    torch.testing.assert_close(blend.partners("cpu"), torch.tensor([[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]))
    # two pure images asked for class 0 (teacher: 0.7/0.2/0.1 and 0.5/0.4/0.1), one blend (ignored), none for 1, 2
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    labels = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0.6, 0, 0.4]])
    batch = SynthBatch(torch.zeros(3, 1, 2, 2), NetOutput(probs.log(), {}), labels=labels)
    blend.on_synthesized(_LOOP, 0, batch)
    torch.testing.assert_close(blend.neighbours, torch.tensor([[0, 0.3, 0.1], [0, 0, 0], [0, 0, 0]]))
    # row 0: measured 0.3 / 0.4 = 0.75 for class 1, 0.25 for class 2; floor 0.25 of uniform (0.5 each)
    expected0 = [0.0, 0.75 * 0.75 + 0.25 * 0.5, 0.75 * 0.25 + 0.25 * 0.5]
    torch.testing.assert_close(blend.partners("cpu")[0], torch.tensor(expected0))
    torch.testing.assert_close(blend.partners("cpu")[1], torch.tensor([0.5, 0, 0.5]))  # unmeasured: uniform
    # second batch: class 0's leftover all on class 2 -> N[0] = 0.9 * (0, .3, .1) + 0.1 * (0, 0, .5)
    probs2 = torch.tensor([[0.5, 0.0, 0.5], [0.5, 0.0, 0.5], [0.1, 0.1, 0.8]]).clamp_min(1e-12)
    blend.on_synthesized(_LOOP, 1, SynthBatch(torch.zeros(3, 1, 2, 2), NetOutput(probs2.log(), {}), labels=labels))
    torch.testing.assert_close(blend.neighbours[0], torch.tensor([0.0, 0.27, 0.14]), atol=1e-6, rtol=0)
    restored = ClassBlend(0.5, 3, _balanced(3))
    restored.load_state_dict(blend.state_dict())
    assert torch.equal(restored.labels(32, "cpu", _rng(3)), blend.labels(32, "cpu", _rng(3)))


def test_blended_targets_mix_the_given_class_with_another_in_the_stated_range():
    blend = ClassBlend(0.25, num_classes=10, base=_balanced(10))
    targets = blend.labels(64, "cpu", _rng())
    assert targets.shape == (64, 10) and torch.allclose(targets.sum(dim=1), torch.ones(64))
    mixed = targets.max(dim=1).values < 1
    assert int(mixed.sum()) == 16  # round(0.25 * 64)
    assert torch.equal(targets.argmax(dim=1), balanced_labels(64, 10))  # the main class stays the position's
    main = targets[mixed].max(dim=1).values
    assert bool((main >= 0.5).all() and (main <= 0.8).all())
    assert bool(((targets[mixed] > 0).sum(dim=1) == 2).all())  # exactly two classes
    assert torch.equal(targets, blend.labels(64, "cpu", _rng()))  # the RNG decides: same seed, same blends
    assert not torch.equal(targets, blend.labels(64, "cpu", _rng(1)))
    # a measured neighbour dominates the draws: class 6 -> 0 (leftover all on class 0)
    blend.neighbours = torch.zeros(10, 10)
    blend.neighbours[6, 0] = 0.3
    partners = []
    for seed in range(200):
        t = blend.labels(64, "cpu", _rng(seed))
        rows = t[(t.max(dim=1).values < 1) & (t.argmax(dim=1) == 6)]
        partners += rows.clone().scatter_(1, torch.full((len(rows), 1), 6), 0).argmax(dim=1).tolist()
    share = partners.count(0) / len(partners)
    assert abs(share - (0.75 + 0.25 / 9)) < 0.06, share


def test_the_conditional_generator_scales_a_blend_by_the_blended_embedding():
    inner = torch.nn.Identity()
    gen = ClassConditional(inner, num_classes=3, latent_dim=4)
    z = torch.randn(2, 4)
    soft = torch.tensor([[0.6, 0.0, 0.4], [0.0, 1.0, 0.0]])
    by_hand = z * (0.6 * gen.embed.weight[0] + 0.4 * gen.embed.weight[2]).expand(2, 4).clone()
    by_hand[1] = z[1] * gen.embed.weight[1]
    torch.testing.assert_close(gen(z, soft), by_hand)
    torch.testing.assert_close(gen(z[1:], soft[1:]), gen(z[1:], torch.tensor([1])))  # one-hot = the class


def test_the_one_hot_term_takes_soft_targets_and_per_class_terms_the_main_class():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    soft = torch.tensor([[0.6, 0.0, 0.4], [0.0, 1.0, 0.0]])
    log_p = F.log_softmax(logits, dim=1)
    by_hand = -(0.6 * log_p[0, 0] + 0.4 * log_p[0, 2] + log_p[1, 1]) / 2
    torch.testing.assert_close(one_hot_loss(logits, soft), by_hand)
    batch = SynthBatch(torch.zeros(2, 1, 2, 2), NetOutput(logits, {}), labels=soft)
    assert batch.classes().tolist() == [0, 1]


def test_the_loop_asks_for_and_targets_the_same_blends_and_learns_the_neighbours(tmp_path):
    trainer, asked, targeted = asked_and_targeted(tmp_path, {"blend": 0.5})
    blend = next(c for c in trainer.callbacks if isinstance(c, ClassBlend))
    assert [len(a) for a in asked] == [16, 8, 8] * 3
    assert all(torch.equal(asked[3 * s], targeted[s]) for s in range(3))  # G's batch is the objective's
    assert all(int((a.max(dim=1).values < 1).sum()) == len(a) // 2 for a in asked)  # fresh batches blended too
    assert not torch.equal(asked[0], asked[3])  # new blends each step
    assert blend.neighbours is not None and float(blend.neighbours.sum()) > 0


@pytest.mark.slow
def test_a_blend_run_logs_its_partners_and_resumes_exactly(tmp_path, monkeypatch):
    from datafree.pipeline import distill_from_config

    sections = {"generator": {"conditional": True, "blend": 0.5, "quota": 0.3}}  # with the quota: both compose
    straight = tiny_config(tmp_path / "a", **sections)
    save_random_teacher(straight)
    results = distill_from_config(straight)
    lines = [json.loads(l) for l in open(f"{straight.train.output_dir}/metrics.jsonl")]
    assert all(len(l["blend_partner"]) == 10 and all(p != k for k, p in enumerate(l["blend_partner"])) for l in lines)
    assert results["blend_partner"] == lines[-1]["blend_partner"] and "class_quota" in results
    resumed = tiny_config(tmp_path / "b", **sections)
    save_random_teacher(resumed)
    crash_then_resume(resumed, monkeypatch)  # the neighbours at the checkpoint come back, so the same blends follow
    assert_same_weights(straight.train.output_dir, resumed.train.output_dir)


@pytest.mark.parametrize("generator, message", [({"conditional": True, "blend": 1.0}, "in \\(0, 1\\)"),
                                                ({"blend": 0.5}, "generator.conditional = true")])  # fmt: skip
def test_bad_blend_values_are_refused_with_the_fix(tmp_path, generator, message):
    from datafree.build import check_callbacks
    from datafree.config import ConfigError

    config = tiny_config(tmp_path, generator=generator)  # the old spelling (generator.blend): onto [[callbacks]]
    assert [c.name for c in config.callbacks] == ["blend"]
    with pytest.raises(ConfigError, match=message):
        check_callbacks(config, 10)
