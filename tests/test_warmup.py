"""The ``warmup`` callback: the first steps train the generator alone; the student's schedule, image count and timing
follow (through the loop's seams: student_updates, generator_only_steps, fixed_plan)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from datafree.pipeline import distill_from_config
from tests.conftest import save_random_teacher, tiny_config


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items() if v.is_floating_point())


def test_warmup_steps_update_the_generator_and_leave_the_student_alone(tmp_path):
    from datafree import build

    config = tiny_config(tmp_path, train={"steps": 8, "student_steps": 2, "fresh_batches": True},
                         callbacks=[{"name": "warmup", "params": {"fraction": 0.25}}])  # fmt: skip
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    assert trainer.generator_only_steps == 2 and trainer.fixed_plan  # 0.25 x 8
    with pytest.raises(ValueError, match="keeps the step count"):
        trainer.set_total_steps(10)
    student, generator = _weights(trainer.student_net), _weights(trainer.generator)
    for step in range(2):
        terms = trainer.train_step(step)
        assert "s_total" not in terms and "s_kd" not in terms  # no student update: nothing to log for it
    assert not _changed(student, trainer.student_net) and _changed(generator, trainer.generator)
    assert trainer.sched_s.last_epoch == 0  # the student's LR schedule waits for its first update
    terms = trainer.train_step(2)
    assert "s_kd" in terms and _changed(student, trainer.student_net) and trainer.sched_s.last_epoch == 1


@pytest.mark.slow
def test_warmup_run_logs_lr_images_and_student_terms_from_the_first_student_step(tmp_path):
    config = tiny_config(tmp_path, student={"schedule": "cosine"},
                         train={"steps": 6, "student_steps": 2, "fresh_batches": True, "eval_every": 6,
                                "checkpoint_every": 6, "sample_every": 6},
                         callbacks=[{"name": "warmup", "params": {"fraction": 0.5}}])  # fmt: skip
    save_random_teacher(config)
    results = distill_from_config(config)
    lines = [json.loads(line) for line in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert [("s_kd" in line) for line in lines] == [False] * 3 + [True] * 3
    assert all("g_onehot" in line for line in lines)
    assert lines[2]["lr_s"] == pytest.approx(config.student.lr)  # untouched by the warm-up
    assert lines[3]["lr_s"] == pytest.approx(config.student.lr * 0.75)  # cosine over the 3 student steps: 1/3 done
    assert lines[5]["lr_s"] == pytest.approx(0.0, abs=1e-12)  # ...and at zero at the last step
    # warm-up steps make G's batch of 16; the others G's batch and one fresh batch of 16
    assert [line["images"] for line in lines] == [16, 32, 48, 80, 112, 144]
    assert results["images_generated"] == 144


def test_budget_timing_weights_generator_only_steps_by_the_warmup(tmp_path, monkeypatch):
    """A full step "takes" 1 s and a generator-only one 0.25 s on a fake clock: the mean step is their mix."""
    from datafree import build, pipeline
    from datafree.trainer import DataFreeTrainer

    clock = {"now": 0.0}
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: clock["now"])

    def fake_step(self, step, updates=None):
        assert updates is not None  # the timing says which kind of step it times
        clock["now"] += 0.25 if updates == 0 else 1.0

    monkeypatch.setattr(DataFreeTrainer, "train_step", fake_step)
    for warmup, expected in ((0.0, 1.0), (0.4, 0.6 * 1.0 + 0.4 * 0.25)):
        config = tiny_config(tmp_path, train={"steps": 100, "warmup": warmup})  # the old spelling, translated
        save_random_teacher(config)
        teacher, student, spec = build.networks_from_config(config)
        seconds = pipeline.time_steps(config, build.make_accelerator(config), teacher, student, spec)
        assert seconds == pytest.approx(expected)
        build.reset_accelerate()


def test_budget_timing_takes_the_median_step_so_one_slow_step_does_not_shrink_the_run(tmp_path, monkeypatch):
    """Timed steps of 1, 1, 3, 1, 1 s (after a 9 s warm-up) on a fake clock: 1 s per step, where the mean says 1.4."""
    from datafree import build, pipeline
    from datafree.trainer import DataFreeTrainer

    clock = {"now": 0.0}
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: clock["now"])
    durations = (9.0, 1.0, 1.0, 3.0, 1.0, 1.0)
    monkeypatch.setattr(DataFreeTrainer, "train_step",
                        lambda self, step, updates=None: clock.update(now=clock["now"] + durations[step]))
    config = tiny_config(tmp_path, train={"steps": 100})
    save_random_teacher(config)
    teacher, student, spec = build.networks_from_config(config)
    assert pipeline.time_steps(config, build.make_accelerator(config), teacher, student, spec, probe_steps=6) == 1.0


@pytest.mark.parametrize(("sections", "message"), [
    ({"train": {"warmup": 1.0}}, "fraction is the share of train.steps without student updates, in \\[0, 1\\)"),
    ({"callbacks": [{"name": "warmup", "params": {"fraction": -0.1}}]}, "in \\[0, 1\\)"),
    ({"train": {"warmup": 0.2, "transfer": "real"}}, "has no generator step; remove the warmup callback"),
])  # fmt: skip
def test_bad_warmup_is_refused_with_the_fix(tmp_path, sections, message):
    """Refused when the run's callbacks are checked (before anything is built), in either spelling."""
    from datafree.build import check_callbacks
    from datafree.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        check_callbacks(tiny_config(tmp_path, **sections), 10)


def test_old_warmup_spelling_becomes_the_callback_and_both_spellings_are_refused(tmp_path):
    from datafree.config import ConfigError

    config = tiny_config(tmp_path, train={"warmup": 0.3})
    assert [(c.name, c.params) for c in config.callbacks] == [("warmup", {"fraction": 0.3})]
    assert tiny_config(tmp_path, train={"warmup": 0.0}).callbacks == []  # 0 meant off
    with pytest.raises(ConfigError, match="write them as \\[\\[callbacks\\]\\] only"):
        tiny_config(tmp_path, train={"warmup": 0.3}, callbacks=[{"name": "ema"}])


def test_bad_label_precision_is_refused_with_the_fix(tmp_path):
    from datafree.config import ConfigError, validate

    with pytest.raises(ConfigError, match="runtime.label_precision = 'fp16' is not one of \\['auto', 'bf16', 'fp32'\\]"):
        validate(tiny_config(tmp_path, train={"label_precision": "fp16"}))


def test_bf16_labels_round_the_students_extra_targets_and_leave_the_generators_batch_in_fp32(tmp_path):
    """runtime.label_precision = "bf16": the fresh batches' teacher forwards run in bf16 (float32 outputs, close to
    the fp32 forward's but not equal); the batch the generator learns from keeps the fp32 forward."""
    from datafree import build

    config = tiny_config(tmp_path, train={"student_steps": 2, "fresh_batches": True, "label_precision": "bf16"})
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    images, labels = trainer.student_batches(0, 1, trainer.synthesize(0))
    with torch.no_grad():
        exact = trainer.synthesize.student_teacher(images).logits
        g_images, g_out = trainer.synthesize(0)
        assert torch.equal(g_out.logits, trainer.synthesize.teacher(g_images).logits)  # G's batch: fp32 forward
    assert labels.logits.dtype == torch.float32 and not torch.equal(labels.logits, exact)
    torch.testing.assert_close(labels.logits, exact, atol=0.05 * exact.abs().max().item(), rtol=0.05)


def test_loss_panels_include_the_students_terms_that_start_after_the_warmup(tmp_path, monkeypatch):
    from datafree import report

    titles = []
    monkeypatch.setattr(report, "_save", lambda fig, path: titles.extend(ax.get_title() for ax in fig.axes) or "x")
    metrics = [{"step": 1, "g_onehot": 2.0}, {"step": 2, "g_onehot": 1.0, "s_kd": 0.5}]
    report._plot_losses(tmp_path, metrics)
    assert titles == ["g_onehot (generator)", "s_kd (student)"]


@pytest.mark.slow
def test_generator_cosine_schedule_reaches_zero_and_a_resumed_warmup_run_is_exact(tmp_path, monkeypatch):
    """generator.schedule = "cosine" over all steps (warm-up included); resume restores both schedules mid-run
    (checkpoint at step 3 = the warm-up's end, crash in step 5)."""
    from tests.conftest import assert_same_weights, crash_then_resume

    sections = {"generator": {"schedule": "cosine"}, "student": {"schedule": "cosine"},
                "train": {"student_steps": 2, "fresh_batches": True}, "callbacks": [{"name": "warmup", "params": {"fraction": 0.5}}]}  # fmt: skip
    straight = tiny_config(tmp_path / "a", **sections)
    save_random_teacher(straight)
    distill_from_config(straight)
    lines = [json.loads(line) for line in open(f"{straight.train.output_dir}/metrics.jsonl")]
    lr = straight.generator.lr
    assert [line["lr_g"] for line in lines] == pytest.approx([lr * 0.5 * (1 + math.cos(math.pi * s / 6)) for s in range(1, 7)])

    resumed = tiny_config(tmp_path / "b", **sections)
    save_random_teacher(resumed)
    crash_then_resume(resumed, monkeypatch)
    assert_same_weights(straight.train.output_dir, resumed.train.output_dir)
    assert [json.loads(line)["lr_s"] for line in open(f"{resumed.train.output_dir}/metrics.jsonl")] == [l["lr_s"] for l in lines]
