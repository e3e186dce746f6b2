"""The data-free loop end to end on generated data: outputs, resume, non-finite guard."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from datafree.config import Config
from datafree.distill import register_loss
from datafree.distill.base import DistillLoss
from datafree.pipeline import distill_from_config
from datafree.trainer import NonFiniteLossError
from tests.conftest import assert_same_weights, crash_then_resume, save_random_teacher, tiny_config


def test_class_hist_counts_every_generator_batch_since_the_last_line(tmp_path):
    """With a line every 3 steps, its histogram holds 3 batches of the teacher's answers, not the last batch alone:
    the last batches of a many-class run's lines can ask for the same window of classes every time. The coverage
    callback counts it beside its own window, which here (10% of 6 steps) is one step, shorter than the line."""
    from datafree import build
    from datafree.callbacks.coverage import ClassCoverage

    config = tiny_config(tmp_path, train={"steps": 6, "log_every": 3, "eval_every": 6, "sample_every": 6,
                                          "checkpoint_every": 6})  # fmt: skip
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    coverage = next(c for c in trainer.callbacks if isinstance(c, ClassCoverage))
    seen = []
    for step in range(3):
        trainer.train_step(step, 1)
        seen.append(torch.bincount(trainer._last[1].argmax(dim=1), minlength=10))
    record = {}
    coverage.on_log(trainer, record)
    assert record["class_hist"] == torch.stack(seen).sum(dim=0).tolist() and sum(record["class_hist"]) == 3 * 16
    assert record["class_coverage"] == [round(float(c) / 16, 4) for c in seen[-1]]  # its window: the last step only
    trainer.train_step(3, 1)
    record = {}
    coverage.on_log(trainer, record)
    assert sum(record["class_hist"]) == 16  # counted afresh after each line


@pytest.mark.slow
def test_short_run_writes_metrics_checkpoints_samples_and_report(tiny):
    results = distill_from_config(tiny)
    out = tiny.train.output_dir
    lines = [json.loads(l) for l in open(f"{out}/metrics.jsonl")]
    assert [l["step"] for l in lines] == [1, 2, 3, 4, 5, 6]
    assert {"g_onehot", "g_activation", "g_entropy", "s_kd", "teacher_conf", "class_hist"} <= set(lines[0])
    assert "student_acc" in lines[2] and "student_acc" in lines[5]
    assert sum(lines[0]["class_hist"]) == tiny.train.batch_size
    for name in ("student_best.safetensors", "student_last.safetensors", "generator.safetensors", "report.md",
                 "results.json", "samples/step_0000003.png", "checkpoints/LATEST", "accuracy.png"):
        assert (tiny.train.output_dir and __import__("pathlib").Path(out, name)).exists(), name
    saved = json.load(open(f"{out}/results.json"))
    for key in ("teacher_acc", "student_acc_final", "student_acc_best", "steps", "images_generated", "wall_time_s"):
        assert key in saved
    assert saved["steps"] == 6 and saved["images_generated"] == 6 * 16
    assert saved["student_acc_final"] == lines[-1]["student_acc"] and saved["student_acc_best"] >= max(
        l["student_acc"] for l in lines if "student_acc" in l) - 1e-9
    assert results["num_processes"] == 1
    assert len(saved["class_acc"]["teacher"]) == len(saved["class_acc"]["student"]) == 10
    for role in ("teacher", "student"):  # the confusion matrix: its diagonal over its row sums IS the per-class row
        matrix = saved["confusion"][role]
        assert sum(map(sum, matrix)) == 256  # the fake test set's images (data.fake_size), each counted once
        assert [m[k] / sum(m) if sum(m) else None for k, m in enumerate(matrix)] == saved["class_acc"][role]
    # each evaluation's per-class line is the same pass: the last one is the final confusion's diagonal / rows
    assert lines[-1]["student_class_acc"] == [None if a is None else round(a, 4) for a in saved["class_acc"]["student"]]
    assert "student_class_acc" in lines[2] and "student_class_acc" not in lines[0]
    text = open(f"{out}/results.json").read()  # readable_json: one line per row of a matrix, not one per number
    assert sum(line.strip().rstrip(",") == json.dumps(row) for m in saved["confusion"].values() for row in m
               for line in text.splitlines()) >= 20 and len(text.splitlines()) < 150  # fmt: skip
    report = open(f"{out}/report.md").read()
    assert "## Accuracy per class" in report and "student's errors mostly as" in report


def test_per_class_accuracy_by_hand():
    from datafree.nets.evaluate import accuracy, per_class_accuracy

    class Fixed(torch.nn.Module):  # predicts class (x mod 3) from a 1-pixel image holding x
        def forward(self, x):
            return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long() % 3, 4).float()

    images = torch.tensor([0.0, 1, 2, 3, 4, 5]).view(6, 1, 1, 1)  # predictions 0 1 2 0 1 2
    labels = torch.tensor([0, 1, 1, 0, 2, 2])  # class 0: 2/2, class 1: 1/2, class 2: 1/2, class 3: absent
    loader = [(images[:4], labels[:4]), (images[4:], labels[4:])]
    assert per_class_accuracy(Fixed(), loader) == [1.0, 0.5, 0.5, None]
    assert accuracy(Fixed(), loader) == pytest.approx(4 / 6)


def test_confusion_counts_and_the_top_confusion_by_hand():
    from datafree.cli.evaluate import confusion_table
    from datafree.nets.evaluate import confusion_counts
    from datafree.report import top_confusion

    class Fixed(torch.nn.Module):  # predicts class (x mod 3) from a 1-pixel image holding x
        def forward(self, x):
            return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long() % 3, 3).float()

    model = Fixed().train()
    images = torch.tensor([0.0, 1, 2, 3, 4, 5, 6]).view(7, 1, 1, 1)  # predictions 0 1 2 0 1 2 0
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 2])
    loader = [(images[:3], labels[:3]), (images[3:], labels[3:])]  # two batches: the counts must add up
    matrix = confusion_counts(model, loader)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [2, 1, 1]] and model.training  # train mode restored
    assert top_confusion(matrix.tolist(), 2) == (0, 0.5)  # class 2: half of its 4 images taken for class 0
    assert top_confusion(matrix.tolist(), 0) is None  # no error: nothing to name
    table = confusion_table(matrix.tolist(), ["a", "b", "c"])
    assert table.splitlines()[4] == "| c | 50.0 | 25.0 | 25.0 |"


@pytest.mark.slow
def test_student_learns_and_teacher_stays_frozen(tmp_path):
    """A BatchNorm teacher held in memory: its parameters AND buffers (running statistics) are unchanged after a
    run, while the student moved away from the very initialization it started from."""
    from datafree import build
    from datafree.pipeline import distill

    config = tiny_config(tmp_path, teacher={"arch": "resnet18"}, student={"arch": "lenet5_half"},
                         data={"like": "cifar10"}, train={"steps": 3, "eval_every": 3, "batch_size": 8})  # fmt: skip
    spec = build.image_spec(config)
    torch.manual_seed(0)
    teacher = build.build_net("resnet18", spec)
    teacher.train()  # a user's module in train mode: BN would update its statistics if the loop let it
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert any("running_mean" in k for k in before)
    torch.manual_seed(1)
    student = build.build_net("lenet5_half", spec)
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    distill(config, teacher, student, spec)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert teacher.training  # handed back in the mode it came in
    saved = load_file(f"{config.train.output_dir}/student_last.safetensors")
    assert set(saved) == set(initial) and all(k.startswith(("conv", "fc")) for k in saved)  # the bare student net
    assert any(not torch.equal(initial[k], saved[k]) for k in saved)


@pytest.mark.slow
@pytest.mark.parametrize("train", [{}, {"ema_decay": 0.9}, {"student_steps": 3, "replay": 4}])  # EMA, replay ring
def test_resume_reproduces_uninterrupted_run(tmp_path, monkeypatch, train):
    straight = tiny_config(tmp_path / "a", train=train)
    save_random_teacher(straight)
    distill_from_config(straight)

    resumed = tiny_config(tmp_path / "b", train=train)
    save_random_teacher(resumed)
    crash_then_resume(resumed, monkeypatch)  # checkpoint at step 3, crash during step 5

    assert_same_weights(straight.train.output_dir, resumed.train.output_dir)
    steps = [json.loads(l)["step"] for l in open(f"{resumed.train.output_dir}/metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]  # lines written after the checkpoint were dropped, then rewritten
    runs = [json.loads(open(f"{c.train.output_dir}/results.json").read()) for c in (straight, resumed)]
    assert runs[0]["class_hist_run"] == runs[1]["class_hist_run"] and sum(runs[0]["class_hist_run"]) == 6 * 16


@register_loss("test_nan_after_4")
class NanAfterFour(DistillLoss):
    """Test-only loss: finite for 4 calls, then NaN."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, student, teacher):
        self.calls += 1
        value = (student.logits.float() ** 2).mean() * 0.0
        return value + (float("nan") if self.calls > 4 else 0.0)


def test_non_finite_loss_stops_names_the_term_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config(tmp_path, distill=[{"name": "kd"}, {"name": "test_nan_after_4"}],
                         train={"checkpoint_every": 2, "log_every": 2, "eval_every": 2})
    save_random_teacher(config)
    with pytest.raises(NonFiniteLossError, match="s_test_nan_after_4") as err:
        distill_from_config(config)
    assert "step_0000004" in str(err.value)
    latest = json.load(open(f"{config.train.output_dir}/checkpoints/LATEST"))["dir"]
    assert latest == "step_0000004"
    student = load_file(f"{config.train.output_dir}/student_last.safetensors")
    assert all(torch.isfinite(v).all() for v in student.values())


@pytest.mark.slow
def test_adversarial_term_trains_generator_not_student_and_replay_runs(tmp_path):
    config = tiny_config(tmp_path, synthesis={"adversarial": 1.0}, train={"student_steps": 3, "replay": 4, "steps": 4})
    save_random_teacher(config)
    distill_from_config(config)
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert all("g_adversarial" in l for l in lines)

    # the adversarial forward gives gradients to the generator (through the images) and none to the student
    from datafree import build

    trainer = build.trainer_from_config(config)
    images = trainer.generator(trainer.synthesize.sample_latent(0))
    trainer.frozen_student_logits(images).sum().backward()
    assert all(p.grad is None for p in trainer.student.parameters())
    assert any(p.grad is not None for p in trainer.generator.parameters())


@pytest.mark.parametrize("adversarial", [0.0, 1.0])
def test_generator_is_stepped_before_the_student_when_its_loss_goes_through_the_student(tmp_path, adversarial):
    """With the adversarial term G must move first (alone); without it one backward serves both, G and S together."""
    from datafree import build

    config = tiny_config(tmp_path, synthesis={"adversarial": adversarial}, train={"student_steps": 2, "steps": 2})
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    order = []
    trainer.opt_g.optimizer.register_step_post_hook(lambda opt, args, kwargs: order.append("G step"))
    trainer.student.register_forward_pre_hook(lambda module, args: order.append("S forward"))
    trainer.train_step(0)
    first_student_forward_before_g = order.index("S forward") < order.index("G step")
    assert first_student_forward_before_g is (not adversarial)
    backwards = []
    trainer.accelerator.backward = lambda loss, _b=trainer.accelerator.backward: (backwards.append(loss), _b(loss))
    trainer.train_step(1)
    assert len(backwards) == (3 if adversarial else 2)  # G alone + 2 student steps, or G+S together + 1 student step


def test_fresh_batches_draw_a_new_generated_batch_per_extra_student_step(tmp_path):
    config = tiny_config(tmp_path, synthesis={"adversarial": 1.0, "moment": 1.0, "tv": 0.5},
                         train={"student_steps": 3, "fresh_batches": True, "steps": 2})  # fmt: skip
    save_random_teacher(config)
    from datafree import build

    trainer = build.trainer_from_config(config)
    latents = []
    trainer.generator.register_forward_hook(lambda m, args, out: latents.append(args[0].clone()))
    terms = trainer.train_step(0)
    assert len(latents) == 3  # one batch for G's update, two fresh ones for the extra student steps
    assert not torch.equal(latents[0], latents[1]) and not torch.equal(latents[1], latents[2])
    assert torch.equal(latents[0], trainer.synthesize.sample_latent(0))  # draw 0 keeps the one-batch-per-step stream
    assert torch.equal(latents[2], trainer.synthesize.sample_latent(0, draw=2))
    assert terms["g_moment"].item() >= 0.0 and terms["g_tv"].item() >= 0.0


def test_fresh_batches_and_replay_are_exclusive(tmp_path):
    from datafree.build import check_batches
    from datafree.config import ConfigError

    with pytest.raises(ConfigError, match='"replay" and "fresh" both choose the extra student updates'):
        check_batches(tiny_config(tmp_path, train={"student_steps": 2, "fresh_batches": True, "replay": 2}))


@pytest.mark.slow
def test_images_generated_counts_the_fresh_batches(tmp_path):
    config = tiny_config(tmp_path, train={"student_steps": 3, "fresh_batches": True, "steps": 2, "eval_every": 2})
    save_random_teacher(config)
    results = distill_from_config(config)
    assert results["images_generated"] == 2 * 16 * 3 and results["student_steps_per_step"] == 3


@pytest.mark.slow
def test_ema_student_is_the_moving_average_and_is_what_gets_shipped(tmp_path):
    from accelerate.utils import set_seed

    from datafree import build
    from datafree.callbacks import EMA

    decay = 0.6
    config = tiny_config(tmp_path, train={"ema_decay": decay, "steps": 3, "eval_every": 3})
    save_random_teacher(config)
    set_seed(0)
    trainer = build.trainer_from_config(config)
    expected = None
    for step in range(3):  # one student update per step: e_1 = w_1, e_k = d e_(k-1) + (1 - d) w_k
        trainer.train_step(step)
        raw = {k: v.detach().clone() for k, v in trainer.student_net.state_dict().items()}
        expected = raw if expected is None else {k: decay * expected[k] + (1 - decay) * raw[k] for k in raw}
    ema = next(c for c in trainer.callbacks if isinstance(c, EMA))
    for key, value in ema.average.module.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    assert any(not torch.equal(expected[k], raw[k]) for k in raw)  # the average really lags the raw weights

    run = tiny_config(tmp_path / "run", train={"ema_decay": decay})
    save_random_teacher(run)
    results = distill_from_config(run)
    lines = [json.loads(l) for l in open(f"{tmp_path}/run/run/metrics.jsonl")]
    assert {"student_acc", "student_acc_raw"} <= set(lines[2])
    assert results["student_acc_final"] == lines[-1]["student_acc"]  # the final figure is the average's


def test_ema_config_out_of_range_is_rejected(tmp_path):
    from datafree.build import check_callbacks
    from datafree.config import ConfigError

    check_callbacks(tiny_config(tmp_path, train={"ema_decay": 0.999}), 10)  # the old spelling: an ema callback
    with pytest.raises(ConfigError, match='"ema": decay in \\(0, 1\\)'):
        check_callbacks(tiny_config(tmp_path, train={"ema_decay": 1.0}), 10)
    with pytest.raises(ConfigError, match='"ema": decay in \\(0, 1\\)'):
        check_callbacks(tiny_config(tmp_path, callbacks=[{"name": "ema", "params": {"decay": -0.5}}]), 10)


@pytest.mark.e2e
def test_evaluate_cli_prints_per_class_accuracy_of_a_saved_student(tmp_path, capsys):
    from datafree.cli.evaluate import main

    config = tiny_config(tmp_path, train={"steps": 2, "eval_every": 2})
    save_random_teacher(config)
    results = distill_from_config(config)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f"""
[data]
name = "fake"
like = "fashion-mnist"
fake_size = 256
root = "{tmp_path / 'data'}"
[teacher]
checkpoint = "{config.teacher_checkpoint}"
[student]
arch = "lenet5_half"
""")
    student = f"{config.train.output_dir}/student_last.safetensors"
    assert main([student, "--config", str(recipe)]) == 0
    rows = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| ") and "%" in l]
    assert len(rows) == 11 and rows[0].startswith("| T-shirt/top |")  # 10 classes by name, then all
    assert rows[-1].split("|")[3].strip() == f"{100 * results['student_acc_final']:.2f}%"
    assert main([student, "--config", str(recipe), "--confusion"]) == 0
    out = capsys.readouterr().out.split("\nstudent: ")
    student_rows = [l for l in out[1].splitlines() if l.startswith("| ") and "predicted" not in l]
    assert len(student_rows) == 10
    checked = 0
    for k, (line, per_class) in enumerate(zip(student_rows, rows[:10])):  # the diagonal is the per-class accuracy
        cells = line.strip("| ").split(" | ")
        if cells[1:] != ["-"] * 10:
            assert float(cells[1 + k]) == pytest.approx(float(per_class.split("|")[3].strip(" %")), abs=0.051)
            assert sum(map(float, cells[1:])) == pytest.approx(100, abs=0.6)
            checked += 1
    assert checked >= 5  # the fake test set holds most classes: the loop above did compare rows
    assert main([str(tmp_path / "missing.safetensors"), "--config", str(recipe)]) == 2
    assert "student_last.safetensors" in capsys.readouterr().err  # says what a run writes where


@pytest.mark.parametrize("train", [{}, {"student_steps": 3, "fresh_batches": True}, {"student_steps": 2, "replay": 2},
                                   {"student_steps": 2, "augment_flip": True}])  # fmt: skip
def test_the_step_hands_the_losses_detached_teacher_targets(tmp_path, train):
    """The generator's teacher output carries gradients to G; what the student's losses see must not."""
    from datafree import build

    config = tiny_config(tmp_path, distill=[{"name": "kd"}, {"name": "at", "weight": 1.0}], train={"steps": 2, **train})
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    seen = []
    trainer.student.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    g_outputs = []
    trainer.teacher.register_forward_hook(lambda module, args, out: g_outputs.append(out))
    trainer.train_step(0)
    assert g_outputs[0].logits.requires_grad  # G's batch: the teacher output is differentiable w.r.t. the images
    assert len(seen) == config.train.student_steps and all(t.features for t in seen)
    for targets in seen:
        assert not targets.logits.requires_grad and not any(f.requires_grad for f in targets.features.values())


@pytest.mark.slow
def test_max_minutes_fixes_the_step_count_before_step_0_and_resume_keeps_it(tmp_path, monkeypatch):
    from accelerate.state import AcceleratorState, GradientState

    config = tiny_config(tmp_path, train={"steps": 10_000, "max_minutes": 0.02, "checkpoint_every": 2, "eval_every": 2})
    save_random_teacher(config)
    results = distill_from_config(config)
    saved = json.load(open(f"{config.train.output_dir}/config.json"))["train"]["steps"]
    assert 1 <= saved < 10_000  # 1.2 s of a ~0.1 s step, far fewer than the recipe's
    assert results["steps"] == results.get("stopped_at_deadline", saved)  # the plan, or a deadline stop before it
    lines = [json.loads(l) for l in open(f"{config.train.output_dir}/metrics.jsonl")]
    assert lines[-1]["step"] == results["steps"] and lines[-1]["lr_s"] == pytest.approx(config.student.lr)  # constant
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    monkeypatch.setattr("time.perf_counter", lambda: 0.0)  # a resume must not re-time: it takes the saved count
    assert distill_from_config(config, resume=True)["steps"] == saved


def test_max_minutes_budgets_the_whole_run_what_is_spent_and_each_evaluation(monkeypatch):
    from datafree import pipeline

    config = Config()
    config.train.max_minutes, config.train.eval_every = 10.0, 100
    monkeypatch.setattr(pipeline, "time_steps", lambda *args, **kwargs: 0.5)  # seconds per step
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: 100.0)  # 60 s after the run started
    fixed, seconds = pipeline.steps_for_budget(config, SimpleNamespace(print=print), None, None, None, None, False,
                                               started=40.0, eval_seconds=6.0)  # fmt: skip
    # 0.95 * 600 - 60 spent - 2 evaluations (the last step's, the end's per-class one) = 498 s for
    # steps of 0.5 s plus one 6 s evaluation every 100 steps: 498 / 0.56 = 889.3
    assert fixed.train.steps == 889 and seconds == 0.5
    assert config.train.steps == Config().train.steps  # a copy; the input untouched


def test_deadline_stops_the_loop_once_the_reserve_no_longer_fits(tmp_path, capsys):
    from datafree import build
    from datafree.callbacks import Deadline
    from datafree.data import recipe_split

    config = tiny_config(tmp_path, train={"steps": 6, "eval_every": 100, "log_every": 100})
    save_random_teacher(config)
    test_set = recipe_split(config.data, train=False)
    for folder in (config.train.output_dir, tmp_path / "late"):  # the pipeline makes it; these tests skip it
        Path(folder).mkdir(parents=True, exist_ok=True)
    trainer = build.trainer_from_config(config, test_set)
    trainer.callbacks.append(Deadline(deadline=1e12, reserve_s=0.0))
    fit = trainer.fit()
    assert fit["steps"] == 6 and "stopped_at_deadline" not in fit["callbacks"]  # far from the deadline: the planned steps
    late = dataclasses.replace(config.train, output_dir=str(tmp_path / "late"))
    trainer = build.trainer_from_config(dataclasses.replace(config, train=late), test_set)
    clock = iter(float(t) for t in range(100))  # one second later at every question
    trainer.callbacks.append(Deadline(2.5, 1.0, lambda: next(clock)))  # asked at t = 0, 1, 2 after steps 1, 2, 3
    fit = trainer.fit()
    assert fit["steps"] == 3 and fit["callbacks"]["stopped_at_deadline"] == 3
    assert "train.max_minutes would be overrun" in capsys.readouterr().out
    lines = [json.loads(l) for l in open(tmp_path / "late" / "metrics.jsonl")]
    assert lines[-1]["step"] == 3 and "student_acc" in lines[-1]  # the stop step is logged and evaluated


class _IgnoresClassThree(torch.nn.Module):
    """A teacher that never predicts class 3 (its logit is pushed far down): the generator cannot make it."""

    def __init__(self, net):
        super().__init__()
        self.net, self.feature_layer = net, "net." + net.feature_layer

    def forward(self, x):
        logits = self.net(x)
        return logits - 1e4 * torch.nn.functional.one_hot(torch.tensor(3), logits.shape[1]).to(logits)


@pytest.mark.slow
def test_class_coverage_names_a_class_the_generator_never_makes(tmp_path, capsys):
    from datafree import build
    from datafree.pipeline import distill

    config = tiny_config(tmp_path, train={"steps": 4, "eval_every": 2, "batch_size": 40})
    spec = build.image_spec(config)
    torch.manual_seed(0)
    teacher = _IgnoresClassThree(build.build_net("lenet5", spec))
    results = distill(config, teacher, build.build_net("lenet5_half", spec), spec)
    assert 3 in results["classes_under_coverage"] and results["class_coverage"][3] == 0.0
    assert sum(results["class_coverage"]) == pytest.approx(1.0)
    import re

    warned = re.search(r"class\(es\) \[([\d, ]+)\]", capsys.readouterr().out)  # said while running, not only at the end
    assert warned and 3 in [int(k) for k in warned.group(1).split(",")]
    report = open(f"{config.train.output_dir}/report.md").read()
    assert "Classes under 1/(3K) of the images:" in report and "Dress" in report.split("Classes under")[1]


def test_class_coverage_window_shares_and_its_resumable_state():
    from datafree.callbacks import ClassCoverage
    from datafree.nets.features import NetOutput
    from datafree.synthesis import SynthBatch

    def batch(labels):
        return SynthBatch(torch.zeros(len(labels), 1), NetOutput(torch.nn.functional.one_hot(torch.tensor(labels), 4).float()))

    coverage = ClassCoverage(num_classes=4, steps=20, window_fraction=0.1)  # a window of 2 steps
    for step, labels in enumerate([[3, 3, 3, 3], [0, 0, 1, 1], [0, 1, 2, 2]]):  # step 0 falls out of the window
        coverage.on_synthesized(None, step, batch(labels))
    assert coverage.summary() == {"class_coverage": [0.375, 0.375, 0.25, 0.0], "classes_under_coverage": [3]}
    restored = ClassCoverage(num_classes=4, steps=20, window_fraction=0.1)
    restored.load_state_dict(coverage.state_dict())
    restored.on_synthesized(None, 3, batch([3, 3, 3, 3]))
    coverage.on_synthesized(None, 3, batch([3, 3, 3, 3]))
    assert restored.summary() == coverage.summary() == {"class_coverage": [0.125, 0.125, 0.25, 0.5],
                                                         "classes_under_coverage": []}  # fmt: skip


def test_replay_ring_keeps_only_the_teacher_features_the_student_reads(tmp_path):
    from datafree import build

    config = tiny_config(tmp_path, train={"student_steps": 2, "replay": 2, "steps": 2})
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    generator_only = set(trainer.objective.teacher_taps) - set(trainer.accelerator.unwrap_model(trainer.student).teacher_taps)
    assert generator_only  # the activation term reads the teacher's penultimate feature; KD reads none
    trainer.train_step(0)
    images, out = trainer.student_batches.ring[0]
    assert set(out.features).isdisjoint(generator_only) and out.logits.shape[0] == images.shape[0]


def test_fresh_batch_size_sizes_the_students_fresh_batches_and_the_image_count(tmp_path):
    from datafree import build
    from datafree.config import ConfigError, validate

    config = tiny_config(tmp_path, train={"student_steps": 3, "fresh_batches": True, "fresh_batch_size": 4, "steps": 2})
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    batch = trainer.synthesize(0)
    images, targets = trainer.student_batches(0, 1, batch)
    assert batch[0].shape[0] == 16 and images.shape[0] == 4 and targets.logits.shape[0] == 4
    assert trainer.images_per_step == 16 + 2 * 4  # G's batch + two fresh batches of 4
    with pytest.raises(ConfigError, match="fresh_batch_size = 1 sizes the fresh batches: at least 2 images"):
        tiny_config(tmp_path, train={"student_steps": 3, "fresh_batches": True, "fresh_batch_size": 1})
    with pytest.raises(ConfigError, match='"fresh": size = 1 sizes the fresh batches: at least 2 images'):
        build.check_batches(tiny_config(tmp_path, batches=[{"name": "fresh", "params": {"size": 1}}], train={"student_steps": 3}))
    build.check_batches(tiny_config(tmp_path, train={"replay": 2, "student_steps": 3, "fresh_batch_size": 64}))  # the
    # default preset's fresh batch size stays valid when a recipe turns fresh batches off (replay instead)
