"""``class_image_stats``: per class, each layer's per-image averages over positions spread between images as the
class's training images' were; recorded beside the other statistics (``<tap>@images``), which the feature terms
ignore."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from datafree.nets.feature_stats import (BETWEEN_IMAGES, load_reference, record_teacher_stats, recorded_keys,
                                         save_reference, stats_path)  # fmt: skip
from datafree.nets.features import NetOutput
from datafree.synthesis import SynthBatch, create_synthesis_term
from datafree.synthesis.feature_stats import _of_kind
from tests.conftest import save_random_teacher, tiny_config


def test_the_recorded_spread_is_between_the_images_averages_per_class():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    images, labels = torch.randn(30, 1, 8, 8), torch.arange(30) % 3
    pooled, per_class = record_teacher_stats(net, zip(images.split(7), labels.split(7)), num_classes=3, taps=["0"])
    averages = net[0](images).detach().mean(dim=(2, 3)).double()  # (30, 2): each image's average per channel
    for k in range(3):
        mean, var = per_class["0" + BETWEEN_IMAGES]
        torch.testing.assert_close(mean[k].double(), averages[labels == k].mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(var[k].double(), averages[labels == k].var(0, unbiased=False), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(pooled["0" + BETWEEN_IMAGES][1].double(), averages.var(0, unbiased=False), rtol=1e-4,
                               atol=1e-6)  # fmt: skip
    # the spread over images x positions (class_feature_stats') holds the spread within each image too: larger
    assert (per_class["0"][1] > per_class["0" + BETWEEN_IMAGES][1]).all()
    # the feature terms read the layers as before; this term reads the same layers under their own names
    assert set(_of_kind(per_class, None)) == {"0"} and set(_of_kind(per_class, BETWEEN_IMAGES)) == {"0"}
    torch.testing.assert_close(_of_kind(per_class, BETWEEN_IMAGES)["0"][1], per_class["0" + BETWEEN_IMAGES][1])


def test_the_term_against_a_hand_computation_and_blind_to_the_spread_within_an_image():
    term = create_synthesis_term("class_image_stats")
    ref_mean, ref_var = torch.tensor([[1.0], [0.0]]), torch.tensor([[1.0], [4.0]])
    term.reference = {"conv": (ref_mean, ref_var)}
    # class 0: two images averaging 0 and 2 (mean 1, spread 1), each varying a lot across its positions;
    # class 1: two images both averaging 0 (mean 0, spread 0)
    maps = torch.tensor([[-5.0, 5.0], [-3.0, 7.0], [1.0, -1.0], [3.0, -3.0]]).view(4, 1, 1, 2)
    labels = torch.tensor([0, 0, 1, 1])
    batch = SynthBatch(torch.zeros(4, 1, 2, 2), NetOutput(torch.zeros(4, 2), {"conv": maps}), labels)
    scale = torch.tensor(2.5 + 0.25)  # mean_k var_k + var_k mean_k
    scale = scale + 1e-3 * scale
    gap1 = float((4.0 / scale) ** 0.5)  # means equal; std 0 against 2
    assert term(batch).item() == pytest.approx((2 * 0.0 + 2 * gap1) / 4, rel=1e-5)
    # class 0 alone meets this term; the per-class prior over images x positions counts its within-image spread
    first = SynthBatch(torch.zeros(2, 1, 2, 2), NetOutput(torch.zeros(2, 2), {"conv": maps[:2]}), labels[:2])
    stats = create_synthesis_term("class_feature_stats", normalized=True)
    stats.reference = {"conv": (ref_mean, ref_var)}
    assert term(first).item() == pytest.approx(0.0, abs=1e-6) and stats(first).item() > 1.0


@pytest.mark.slow
def test_a_run_reads_the_spread_between_images_and_an_old_file_is_recorded_again(tmp_path):
    from datafree import build
    from datafree.pipeline import distill_from_config
    from datafree.supervised import ensure_for_recipe

    terms = [{"name": "onehot", "weight": 1.0}, {"name": "class_feature_stats", "weight": 1.0},
             {"name": "class_image_stats", "weight": 1.0}]  # fmt: skip
    config = tiny_config(tmp_path, synthesis=terms, train={"steps": 2, "eval_every": 2})
    save_random_teacher(config)
    spec = build.image_spec(config)
    teacher = build.load_teacher_net(config, spec)
    pooled, per_class = record_teacher_stats(teacher, [(torch.randn(20, 1, 32, 32), torch.arange(20) % 10)], 10)
    path = stats_path(config.teacher_checkpoint)
    old = [{tap: v for tap, v in ref.items() if not tap.endswith(BETWEEN_IMAGES)} for ref in (pooled, per_class)]
    save_reference(old[0], path, old[1])  # a file recorded before the term existed
    reads = create_synthesis_term("class_image_stats").recorded_in
    assert not reads(recorded_keys(path))
    assert ensure_for_recipe(config) == path and reads(recorded_keys(path))
    recorded = load_reference(path, per_class=True)
    assert {tap.removesuffix(BETWEEN_IMAGES) for tap in recorded if tap.endswith(BETWEEN_IMAGES)} == set(old[1]) - {
        "logits", "penultimate"}
    assemble = build.assemble(config, build.build_teacher(config, spec), build.build_net("lenet5_half", spec), spec,
                              build.make_accelerator(config))  # fmt: skip
    stats, between = assemble.objective.terms[1], assemble.objective.terms[2]
    assert between.teacher_taps == stats.teacher_taps  # the same layers, under their own names
    results = distill_from_config(config)
    lines = [json.loads(line) for line in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert all(line["g_image_stats"] > 0 for line in lines)
    assert any("spread between images" in use for use in results["uses"])


def test_each_term_says_which_part_of_a_recorded_file_it_reads():
    from datafree.synthesis import synthesis_term_class

    layers_only = {"conv/mean", "conv/var", "conv/class_mean", "conv/class_var"}  # a file from before the outputs
    everything = layers_only | {"logits/class_mean", "penultimate/class_mean", "conv@images/class_mean"}
    reads = {name: (synthesis_term_class(name).recorded_in(set()), synthesis_term_class(name).recorded_in(layers_only),
                    synthesis_term_class(name).recorded_in(everything))
             for name in ["feature_stats", "class_feature_stats", "class_output_stats", "class_penultimate_stats",
                          "class_image_stats", "onehot"]}  # fmt: skip
    assert reads == {"feature_stats": (False, True, True), "class_feature_stats": (False, True, True),
                     "class_output_stats": (False, False, True), "class_penultimate_stats": (False, False, True),
                     "class_image_stats": (False, False, True), "onehot": (None, None, None)}  # fmt: skip


def test_the_zoo_tables_name_what_the_term_read():
    from datafree.bench.zoo import short_use

    use = "recorded per-class spread between images (outputs/x/teacher.stats.safetensors)"
    assert short_use(use) == "recorded per-class spread between images"
    assert short_use("recorded per-class feature statistics (outputs/x/teacher.stats.safetensors)") == "recorded per-class stats"
