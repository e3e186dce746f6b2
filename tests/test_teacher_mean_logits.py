"""The teacher-source seam: a logit-averaging ensemble is one file (datafree/teachers/mean_logits.py) + a registry line."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import save_random_teacher, tiny_config


def _members(tmp_path):
    paths = []
    for seed in (0, 1):
        member = tiny_config(tmp_path, teacher={"checkpoint": str(tmp_path / f"member{seed}.safetensors")})
        save_random_teacher(member, seed=seed)
        paths.append({"arch": "lenet5", "checkpoint": member.teacher.checkpoint})
    return paths


def test_mean_logits_source_averages_its_members_and_namespaces_their_features(tmp_path):
    from datafree import build

    config = tiny_config(tmp_path, teacher={"kind": "mean_logits", "members": _members(tmp_path)})
    spec = build.image_spec(config)
    source = build.build_teacher(config, spec)
    source.tap(["m0/conv1", "m1/conv2"])
    x = torch.randn(4, 1, 32, 32)
    out = source(x)
    nets = [m.net for m in source.members()]
    with torch.no_grad():
        torch.testing.assert_close(out.logits, (nets[0](x) + nets[1](x)) / 2)
    assert source.penultimate_taps == [f"m{i}/{net.feature_layer}" for i, net in enumerate(nets)]
    assert {"m0/conv1", "m1/conv2", *source.penultimate_taps} <= set(out.features)
    assert source.feature_shapes(["m1/conv2"]) == {"m1/conv2": (16, 10, 10)}
    assert not torch.equal(out.features["m0/conv1"], nets[1].conv1(x))  # each member's own features


@pytest.mark.slow
def test_a_run_with_two_teachers_logs_both_members_accuracy_source(tmp_path):
    from datafree.pipeline import distill_from_config

    config = tiny_config(tmp_path, teacher={"kind": "mean_logits", "members": _members(tmp_path)},
                         train={"steps": 2, "eval_every": 2})  # fmt: skip
    results = distill_from_config(config)
    assert results["teacher_params"] == 2 * 61706  # both LeNet-5s are the teacher
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert all("g_activation" in l for l in lines)


def test_mean_logits_needs_two_members(tmp_path):
    from datafree import build
    from datafree.config import ConfigError

    config = tiny_config(tmp_path, teacher={"kind": "mean_logits", "members": _members(tmp_path)[:1]})
    with pytest.raises(ConfigError, match="at least two networks"):
        build.build_teacher(config, build.image_spec(config))
