"""Every class asked for: windows of classes that rotate when a teacher has more classes than a batch holds."""

from __future__ import annotations

import json

import pytest
import torch

from datafree.callbacks import ClassQuota, RotatingLabels


def test_k_at_most_the_batch_keeps_every_class_in_every_batch():
    order = RotatingLabels(10)
    for _ in range(3):
        assert order.labels(64, "cpu").tolist() == [i % 10 for i in range(64)]  # i mod K, as before
    assert order.batches == 0


def test_k_100_at_batch_64_asks_for_every_class_within_two_batches_and_stays_balanced():
    order = RotatingLabels(100)
    first, second = order.labels(64, "cpu"), order.labels(64, "cpu")
    assert set(first.tolist()) | set(second.tolist()) == set(range(100))
    assert len(set(first.tolist())) == 64  # a window of distinct classes
    for _ in range(23):  # 25 batches of 64 = 16 cycles of 100 classes
        order.labels(64, "cpu")
    order = RotatingLabels(100)
    counts = torch.bincount(torch.cat([order.labels(64, "cpu") for _ in range(25)]), minlength=100)
    assert counts.min() == counts.max() == 16


def test_two_images_per_class_when_a_per_class_term_reads_the_batch():
    """per_class = 2 (build's choice when a per-class statistics term is on: it skips a class with one image): each
    window holds n / 2 classes, each twice, and still cycles through every class equally often."""
    order = RotatingLabels(100, per_class=2)
    first = order.labels(64, "cpu")
    assert first.tolist()[:6] == [0, 0, 1, 1, 2, 2] and len(set(first.tolist())) == 32
    assert torch.bincount(first, minlength=100).max() == 2
    windows = [first] + [order.labels(64, "cpu") for _ in range(3)]
    assert set(torch.cat(windows).tolist()) == set(range(100))  # every class within ceil(100 / 32) = 4 batches
    order = RotatingLabels(100, per_class=2)
    counts = torch.bincount(torch.cat([order.labels(64, "cpu") for _ in range(25)]), minlength=100)
    assert counts.min() == counts.max() == 16  # 25 batches of 32 classes = 8 cycles, twice each
    assert RotatingLabels(10, per_class=2).labels(64, "cpu").tolist() == [i % 10 for i in range(64)]  # K <= n: as before
    from datafree.callbacks.rotation import images_per_class
    from datafree.synthesis import create_synthesis_term

    pooled, per_class = create_synthesis_term("feature_stats"), create_synthesis_term("class_feature_stats")
    assert images_per_class([create_synthesis_term("onehot"), pooled]) == 1
    assert images_per_class([pooled, per_class]) == 2


def test_two_ranks_ask_for_disjoint_classes_and_cover_twice_as_many():
    ranks = [RotatingLabels(1000, rank=r, world=2) for r in range(2)]
    seen = set()
    for _ in range(3):
        a, b = (set(rank.labels(64, "cpu").tolist()) for rank in ranks)
        assert not a & b and len(a) == len(b) == 64
        assert not (a | b) & seen  # the next step's windows are new classes too
        seen |= a | b
    assert len(seen) == 3 * 2 * 64


def test_the_quota_stratifies_in_the_rotated_order_and_the_counter_resumes():
    order = RotatingLabels(100)
    quota = ClassQuota(0.5, 100, order)
    first, second = (quota.labels(64, "cpu") for _ in range(2))
    assert set(first.tolist()) | set(second.tolist()) == set(range(100))  # uniform shares: the windows themselves
    quota.gap = torch.zeros(100)
    quota.gap[64:70] = 1.0  # the student lags on classes 64-69: they take half of the batch whose window holds them
    third = quota.labels(64, "cpu")  # the window 28 .. 91
    assert set(third.tolist()) <= set(range(28, 92)) and (third >= 64).logical_and(third < 70).sum() >= 30
    again = RotatingLabels(100)
    again.load_state_dict(order.state_dict())
    assert torch.equal(again.labels(64, "cpu"), order.labels(64, "cpu"))


@pytest.mark.slow
def test_a_100_class_run_asks_for_classes_beyond_the_batch(tmp_path, monkeypatch):
    from datafree.config import from_dict
    from datafree.pipeline import distill_from_config

    config = from_dict({"name": "many", "data": {"name": "fake", "like": "cifar100", "fake_size": 128, "eval_batch_size": 64},
                        "teacher": {"arch": "lenet5"},
                        "student": {"arch": "lenet5_half"},
                        "teacher_training": {"epochs": 1, "batch_size": 32},
                        "generator": {"width": 8, "blend": 0.0},
                        "train": {"steps": 20, "batch_size": 16, "fresh_batches": False, "student_steps": 1,
                                  "eval_every": 20, "log_every": 5, "sample_every": 20, "checkpoint_every": 20,
                                  "precise_bn": 0, "channels_last": False, "output_dir": str(tmp_path / "run")}})  # fmt: skip
    from datafree.supervised import train_teacher

    config.teacher.checkpoint = str(tmp_path / "t" / "teacher.safetensors")
    train_teacher(config)
    asked = []
    labels = RotatingLabels.labels
    monkeypatch.setattr(RotatingLabels, "labels", lambda self, *a: asked.append(labels(self, *a)) or asked[-1])
    results = distill_from_config(config)
    assert len(results["class_coverage"]) == 100 and len(asked) >= 20  # the run's generator took its labels here
    assert set(torch.cat(asked).tolist()) == set(range(100))  # every class, though a batch holds 16


def test_a_thousand_classes_are_summarized_in_the_metrics_line_and_the_warning_names_the_rarest(capsys):
    from types import SimpleNamespace

    from datafree.callbacks import ClassCoverage, per_class_field

    assert per_class_field([0.5, 0.25]) == [0.5, 0.25]  # up to 100 classes: the list as is
    values = [1.0] * 1000
    values[7], values[3] = 0.0, 0.5
    field = per_class_field(values)
    assert field["classes"] == 1000 and field["min"] == 0.0 and field["max"] == 1.0
    assert field["lowest"][:2] == [[7, 0.0], [3, 0.5]]
    coverage = ClassCoverage(1000, steps=10)
    logits = torch.full((64, 1000), -10.0)
    logits[torch.arange(64), torch.arange(64) % 60] = 10.0  # 60 of 1000 classes made
    batch = SimpleNamespace(teacher=SimpleNamespace(logits=logits))
    coverage.on_synthesized(None, 0, batch)
    record = {}
    coverage.on_log(SimpleNamespace(accelerator=SimpleNamespace(print=print, reduce=lambda t, reduction: t)), record)
    assert record["class_coverage"]["classes"] == 1000 and record["coverage_low"]["count"] == 940
    hist = record["class_hist"]  # the line's histogram summarized too; the run's counts go to results.json
    assert hist["classes"] == 1000 and hist["min"] == 0 and hist["max"] == 2 and hist["lowest"][0] == [60, 0]
    run = coverage.summary()["class_hist_run"]
    assert len(run) == 1000 and sum(run) == 64 and run[0] == 2 and run[59] == 1 and run[60] == 0
    printed = capsys.readouterr().out
    assert "... and 930 more]" in printed and len(printed) < 400  # ten named, one line


@pytest.mark.slow
def test_a_1000_class_224_px_run_takes_a_few_steps_on_the_imagenet_stand_in(tmp_path):
    """K = 1000 at ImageNet's size, on ``fake`` like ``imagenet`` (nothing downloaded), with the default preset's
    terms: memory and logs stay bounded, and the coverage guard names the rarest classes."""
    from datafree.data import DataMissingError, dataset_info, load_dataset
    from datafree.pipeline import distill_from_config
    from datafree.config import from_dict
    from tests.conftest import save_random_teacher

    info = dataset_info("imagenet")
    assert (info.num_classes, info.image_size, info.channels) == (1000, 224, 3) and info.class_names[0] == "tench"
    with pytest.raises(DataMissingError, match="cannot be downloaded automatically"):
        load_dataset("imagenet", root=tmp_path, train=False)
    config = from_dict({"name": "k1000", "preset": "default",
                        "data": {"name": "fake", "like": "imagenet", "fake_size": 16, "eval_batch_size": 8},
                        "teacher": {"arch": "resnet8_narrow", "checkpoint": str(tmp_path / "teacher.safetensors")},
                        "student": {"arch": "resnet8_narrow"},
                        "generator": {"width": 8, "latent_dim": 32},
                        "train": {"steps": 3, "batch_size": 8, "fresh_batch_size": 8, "student_steps": 2, "eval_every": 3,
                                  "log_every": 1, "sample_every": 3, "checkpoint_every": 3, "precise_bn": 2,
                                  "mixed_precision": "no", "channels_last": False, "output_dir": str(tmp_path / "run")}})  # fmt: skip
    save_random_teacher(config)
    results = distill_from_config(config)
    assert results["steps"] == 3 and len(results["class_coverage"]) == 1000
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert max(len(line) for line in lines) < 4000  # summaries, not 1000-long lists per line
    assert json.loads(lines[-1])["student_class_acc"]["classes"] == 1000
    assert json.loads(lines[-1])["class_hist"]["classes"] == 1000  # summarized in the line...
    assert len(results["class_hist_run"]) == 1000 and sum(results["class_hist_run"]) == 3 * 8  # ...whole in results
    report = (tmp_path / "run" / "report.md").read_text()
    assert "effective classes of 1000" in report and (tmp_path / "run" / "teacher_view.png").is_file()
