"""DAFL's three generator losses against values worked out by hand."""

import math

import pytest
import torch

from datafree.nets.features import NetOutput
from datafree.synthesis import (SynthBatch, SynthesisObjective, activation_loss, batch_mean_probs, create_synthesis_term,
                                entropy_loss, one_hot_loss)  # fmt: skip


def test_one_hot_loss_is_cross_entropy_against_own_argmax():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    # labels = argmax = [0, 1]; CE_i = log(1 + e^-margin)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert one_hot_loss(logits).item() == pytest.approx(expected, rel=1e-6)


def test_activation_loss_official_mean_and_paper_l1():
    features = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert activation_loss(features, "mean").item() == pytest.approx(-1.5)  # (1+2+3+0)/4
    assert activation_loss(features, "l1").item() == pytest.approx(-3.0)  # per-sample L1 = 3, 3


def test_entropy_loss_natural_and_log10():
    p = torch.tensor([0.25, 0.75])
    ln_value = 0.25 * math.log(0.25) + 0.75 * math.log(0.75)
    assert entropy_loss(p, "ln").item() == pytest.approx(ln_value, rel=1e-6)
    assert entropy_loss(p, "log10").item() == pytest.approx(ln_value / math.log(10), rel=1e-6)
    # uniform distribution has the lowest value (max entropy)
    assert entropy_loss(torch.full((4,), 0.25), "ln").item() == pytest.approx(-math.log(4), rel=1e-6)


def test_objective_weights_terms_and_uses_batch_mean_softmax():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])  # softmax rows [.25,.75], [.75,.25]
    features = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    activation = create_synthesis_term("activation", reduction="mean")
    activation.taps = ("fc:input",)  # what setup reads from the teacher source
    terms_ = [create_synthesis_term("onehot"), activation, create_synthesis_term("entropy", log="ln")]
    weights = [{"weight": w, "schedule": "constant"} for w in (2.0, 0.5, 3.0)]
    batch = SynthBatch(torch.zeros(2, 1, 1, 1), NetOutput(logits, {"fc:input": features}))
    total, terms = SynthesisObjective(terms_, weights)(batch)
    assert terms["g_entropy"].item() == pytest.approx(-math.log(2), rel=1e-6)  # batch mean is uniform
    assert terms["g_activation"].item() == pytest.approx(-1.0)
    expected = 2.0 * terms["g_onehot"] + 0.5 * -1.0 + 3.0 * -math.log(2)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_entropy_of_a_conditional_batch_is_over_the_classes_it_was_made_for():
    """K = 6 classes, a batch made for classes 0-2 (a window, K > n): the term is the entropy of the batch mean over
    those three, renormalized, so sharp answers for the asked classes are its optimum; a batch that asked for every
    class (or an unconditional one) keeps DAFL's entropy over all K, bit for bit."""
    term = create_synthesis_term("entropy", log="ln")
    sharp = torch.full((3, 6), -20.0)
    sharp[range(3), range(3)] = 20.0  # image i answers class i with certainty
    window = torch.tensor([0, 1, 2])
    made_for = SynthBatch(torch.zeros(3, 1, 1, 1), NetOutput(sharp), labels=window)
    assert term(made_for).item() == pytest.approx(-math.log(3), rel=1e-5)  # the best value over three classes
    spread = SynthBatch(torch.zeros(3, 1, 1, 1), NetOutput(torch.zeros(3, 6)), labels=window)
    assert term(spread).item() == pytest.approx(-math.log(3), rel=1e-5)  # spread over all six: the same over three
    unconditional = SynthBatch(torch.zeros(3, 1, 1, 1), NetOutput(sharp))
    assert term(unconditional).item() == pytest.approx(-math.log(3), rel=1e-5)
    assert term(SynthBatch(torch.zeros(3, 1, 1, 1), NetOutput(torch.zeros(3, 6)))).item() == pytest.approx(-math.log(6))
    # before: over all six classes, spreading (ln 6) beat sharp answers for the asked three (ln 3); now they tie, and
    # the one-hot term decides. Every class asked for: DAFL's value exactly
    logits = torch.randn(12, 6)
    every = SynthBatch(torch.zeros(12, 1, 1, 1), NetOutput(logits), labels=torch.arange(12) % 6)
    assert torch.equal(term(every), entropy_loss(batch_mean_probs(logits), "ln"))
    soft = torch.zeros(3, 6)
    soft[0, 0] = soft[1, 1] = 1.0
    soft[2, 1] = soft[2, 4] = 0.5  # a blend of classes 1 and 4: both count as asked
    assert term.asked(soft, 6).tolist() == [True, True, False, False, True, False]


def test_global_entropy_matches_one_big_batch_after_ddp_averaging():
    torch.manual_seed(0)
    a = torch.randn(4, 5, requires_grad=True)
    b = torch.randn(4, 5)
    # one process with the whole batch
    full = torch.cat([a, b.clone().requires_grad_(False)])
    ref = batch_mean_probs(full)
    ref_loss = entropy_loss(ref, "ln")
    (ref_grad,) = torch.autograd.grad(ref_loss, a)
    # "rank 0" holding a; the other rank's softmax sum arrives through reduce_sum as a constant
    other = torch.softmax(b, dim=1).sum(0)
    local_loss = entropy_loss(batch_mean_probs(a, reduce_sum=lambda s: s + other, world_size=2), "ln")
    (local_grad,) = torch.autograd.grad(local_loss, a)
    assert local_loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    # DDP averages gradients over 2 ranks, so the local gradient must be 2x the exact one
    torch.testing.assert_close(local_grad / 2, ref_grad)


def test_adversarial_loss_is_minus_l1_between_probabilities():
    from datafree.synthesis import adversarial_loss

    s = torch.tensor([[0.0, 0.0]])  # probs [.5, .5]
    t = torch.tensor([[math.log(3.0), 0.0]])  # probs [.75, .25]
    assert adversarial_loss(s, t).item() == pytest.approx(-0.5)
    assert adversarial_loss(t, t).item() == pytest.approx(0.0)


def test_moment_loss_by_hand():
    from datafree.synthesis import moment_loss

    # one channel, values 0, 2, 0, 2: mean 1, unbiased std sqrt(4/3) -> 1 + (sqrt(4/3) - 1)^2
    images = torch.tensor([0.0, 2.0, 0.0, 2.0]).view(2, 1, 1, 2)
    assert moment_loss(images).item() == pytest.approx(1 + (math.sqrt(4 / 3) - 1) ** 2, rel=1e-6)
    # two channels add up; a channel already at mean 0 / std 1 contributes nothing
    unit = torch.tensor([-1.0, 1.0, -1.0, 1.0]).view(2, 1, 1, 2) / math.sqrt(4 / 3)
    both = torch.cat([images, unit], dim=1)
    assert moment_loss(both).item() == pytest.approx(moment_loss(images).item(), rel=1e-6)


def test_total_variation_by_hand():
    from datafree.synthesis import total_variation_loss

    # 2x2 image [[0, 1], [3, 5]]: vertical diffs |3-0|, |5-1| -> mean 3.5; horizontal |1-0|, |5-3| -> mean 1.5
    image = torch.tensor([[0.0, 1.0], [3.0, 5.0]]).view(1, 1, 2, 2)
    assert total_variation_loss(image).item() == pytest.approx(5.0)
    assert total_variation_loss(torch.full((2, 1, 4, 4), 7.0)).item() == 0.0
