"""A budgeted run re-plans its length once from its own first steps (datafree.callbacks.BudgetReplan)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from conftest import assert_same_weights, interrupt_after, save_random_teacher, tiny_config


def test_a_schedule_stretched_mid_run_follows_at_once_and_its_state_carries_the_plan():
    from datafree.optim import make_schedule, set_total_steps, total_steps_of
    from datafree.io.trainstate import _split

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = make_schedule(optimizer, "cosine", 10)
    for _ in range(5):
        optimizer.step()
        schedule.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0)  # halfway down the cosine of 10 steps
    set_total_steps(schedule, 20)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 5 / 20)))
    assert schedule.get_last_lr() == [optimizer.param_groups[0]["lr"]] and total_steps_of(schedule) == 20
    state = schedule.state_dict()
    _split(state, "schedule", {}, {})  # plain values only: datafree.io.trainstate saves it without pickling
    fresh = make_schedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0), "cosine", 10)
    fresh.load_state_dict(state)
    assert total_steps_of(fresh) == 20
    steps = make_schedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), "step", 100, [0.5], 0.1)
    set_total_steps(steps, 200)  # the milestone is a fraction: it moves from step 50 to step 100
    assert [steps.lr_lambdas[0](s) for s in (99, 100)] == [1.0, pytest.approx(0.1)]


def _loop(steps: int, elapsed: float):
    calls = []
    loop = SimpleNamespace(config=SimpleNamespace(steps=steps), progress=SimpleNamespace(elapsed_s=elapsed),
                           accelerator=SimpleNamespace(num_processes=1, print=lambda *a: None),
                           set_total_steps=calls.append)  # fmt: skip
    return loop, calls


def test_the_replan_fits_the_steps_left_at_the_rate_measured_so_far():
    from datafree.callbacks import BudgetReplan

    told = []
    # planned 50 steps; at step 5 (10%) the loop has taken 5 s (1 s per step), 15 s since the run started at 0;
    # the deadline is at 100 s with 10 s kept back; an evaluation of 2 s every 10 steps (none made yet)
    replan = BudgetReplan(deadline=100.0, reserve_s=10.0, first_plan=50, eval_seconds=2.0, eval_every=10,
                          on_replan=told.append, clock=lambda: 15.0)  # fmt: skip
    loop, calls = _loop(50, 5.0)
    replan.on_step_start(loop, 4, 0.08)
    assert calls == []  # only at step 5
    replan.on_step_start(loop, 5, 0.1)
    # 75 s left at 1 s + 2 s / 10 per step: 62 more steps
    assert calls == [67] and told == [67] and replan.summary() == {"steps_planned": [50, 67]}
    replan.on_step_start(loop, 5, 0.1)
    assert calls == [67]  # once per fraction
    # the second re-plan at 50% of the new plan (step 34 of 67): 40 s taken (3 evaluations of 2 s among them:
    # 34 s of steps, 1 s each), 44 s since the start: 46 s left at 1 s + 2 s / 10 per step -> 38 more steps
    replan.clock = lambda: 44.0
    loop.progress.elapsed_s, loop.config.steps = 40.0, 67  # as the trainer's set_total_steps left them
    replan.on_step_start(loop, 33, 0.49)
    assert calls == [67]
    replan.on_step_start(loop, 34, 0.5)
    assert calls == [67, 72] and told == [67, 72] and replan.summary() == {"steps_planned": [50, 67, 72]}
    replan.on_step_start(loop, 36, 0.5)
    assert len(calls) == 2  # no third
    # evaluations already made come off the measured rate: 3 at 2 s in 30 s of 30 steps -> 0.8 s + 0.2 s
    replan = BudgetReplan(100.0, 10.0, 300, eval_seconds=2.0, eval_every=10, clock=lambda: 40.0)
    loop, calls = _loop(300, 30.0)
    replan.on_step_start(loop, 30, 0.1)
    assert calls == [30 + 50]


def _stretch_at_step_2(monkeypatch, to_steps: int):
    """Every trainer the pipeline builds moves its plan to ``to_steps`` at step 2 (as a budget's re-plan does)."""
    from datafree import build
    from datafree.callbacks import Callback

    class Stretch(Callback):
        def on_step_start(self, loop, step, progress):
            if step == 2 and loop.config.steps != to_steps:
                loop.set_total_steps(to_steps)

    original = build.build_trainer

    def with_stretch(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.callbacks.append(Stretch())
        return trainer

    monkeypatch.setattr(build, "build_trainer", with_stretch)


@pytest.mark.slow
def test_a_run_replanned_mid_run_resumes_under_its_new_plan_exactly(tmp_path, monkeypatch):
    from datafree.build import reset_accelerate
    from datafree.pipeline import distill_from_config

    def config_at(folder):
        config = tiny_config(tmp_path, train={"output_dir": str(tmp_path / folder), "steps": 6},
                             student={"schedule": "cosine"}, generator={"schedule": "cosine"})  # fmt: skip
        save_random_teacher(config)
        return config

    _stretch_at_step_2(monkeypatch, 9)
    whole = distill_from_config(config_at("whole"))
    assert whole["steps"] == 9
    lr_s = {line["step"]: line["lr_s"] for line in map(json.loads, open(tmp_path / "whole" / "metrics.jsonl"))}
    # after 6 steps the 9-step cosine is a quarter of the way up from its end (the 6-step one would be at 0)
    assert lr_s[6] == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi * 6 / 9))) and lr_s[9] == pytest.approx(0)
    reset_accelerate()
    # crash during step 5, after the checkpoint of step 3 (written under the 9-step plan); config.json still says
    # 6 (nothing rewrote it here): the resumed run takes the checkpoint's plan
    with monkeypatch.context() as patch:
        interrupt_after(patch, 4)
        with pytest.raises(KeyboardInterrupt):
            distill_from_config(config_at("resumed"))
    reset_accelerate()
    fresh = config_at("resumed")  # a new Config, 6 steps, as the command line would build it again
    assert json.load(open(tmp_path / "resumed" / "config.json"))["train"]["steps"] == 6
    assert distill_from_config(fresh, resume=True)["steps"] == 9
    assert_same_weights(tmp_path / "whole", tmp_path / "resumed")


@pytest.mark.slow
def test_a_budgeted_run_replans_and_says_so(tmp_path):
    from datafree.pipeline import distill_from_config

    config = tiny_config(tmp_path, train={"steps": 10_000, "max_minutes": 0.05, "eval_every": 5, "log_every": 5})
    save_random_teacher(config)
    results = distill_from_config(config)
    first, *replans = results["steps_planned"]
    saved = json.load(open(f"{config.train.output_dir}/config.json"))["train"]["steps"]
    assert first < 10_000 and 1 <= len(replans) <= 2  # at 10% and (if the run got there) at 50%
    assert saved == replans[-1]  # the folder describes the plan the run finished under
    assert results["steps"] == results.get("stopped_at_deadline", replans[-1])


def test_a_capped_budget_never_plans_past_the_recipes_steps():
    from datafree.callbacks import BudgetReplan

    # the same run as above, budget_mode "cap" at 60 steps: the re-plan would give 67, the cap keeps 60
    replan = BudgetReplan(100.0, 10.0, 50, eval_seconds=2.0, eval_every=10, clock=lambda: 15.0, most_steps=60)
    loop, calls = _loop(50, 5.0)
    replan.on_step_start(loop, 5, 0.1)
    assert calls == [60] and replan.summary() == {"steps_planned": [50, 60]}
    # a slow machine still shrinks: the cap is an upper bound only
    replan = BudgetReplan(100.0, 10.0, 300, eval_seconds=2.0, eval_every=10, clock=lambda: 40.0, most_steps=300)
    loop, calls = _loop(300, 30.0)
    replan.on_step_start(loop, 30, 0.1)
    assert calls == [30 + 50]


@pytest.mark.slow
def test_a_capped_budget_on_a_fast_machine_runs_the_recipes_steps(tmp_path):
    from datafree.pipeline import distill_from_config

    config = tiny_config(tmp_path, train={"steps": 12, "max_minutes": 30, "budget_mode": "cap", "eval_every": 6,
                                          "log_every": 6})  # fmt: skip
    save_random_teacher(config)
    results = distill_from_config(config)
    assert results["steps"] == 12 and set(results["steps_planned"]) == {12}
    from datafree.config import ConfigError, validate

    with pytest.raises(ConfigError, match="train.budget_mode"):
        validate(tiny_config(tmp_path / "b", train={"budget_mode": "most"}))


def test_budget_callback_is_every_runs_and_acts_only_on_a_plan():
    """``budget`` is added to every run; without the pipeline's plan it has no re-plan and no deadline; with one it
    re-plans at its ``replan_at`` fractions, drops the re-plan where a callback keeps the plan (a warm-up), and its
    deadline stops the loop with the deadline's reason."""
    from datafree.callbacks import BudgetPlan, CallbackContext, build_callbacks

    context = CallbackContext(num_classes=10, steps=100, conditional=False)
    named = lambda callbacks: {type(c).__name__: c for c in callbacks}  # noqa: E731
    budget = named(build_callbacks([], context))["Budget"]  # not listed: every run has it
    assert budget.replan is None and budget.deadline is None
    loop, calls = _loop(100, 0.0)
    loop.fixed_plan = False
    budget.setup(loop)
    budget.on_step_start(loop, 10, 0.1)
    assert calls == [] and not budget.should_stop(loop) and budget.summary() == {}

    plan = BudgetPlan(deadline=100.0, reserve_s=10.0, replan_reserve_s=10.0, first_plan=50, eval_seconds=2.0,
                      eval_every=10)  # fmt: skip
    context.budget = plan
    budget = named(build_callbacks([("budget", {"replan_at": [0.2]})], context))["Budget"]
    budget.replan.clock = budget.deadline.clock = lambda: 15.0
    loop, calls = _loop(50, 10.0)
    loop.fixed_plan = False
    budget.setup(loop)
    budget.on_step_start(loop, 5, 0.1)  # not its fraction: 0.2 of 50 is step 10
    assert calls == []
    budget.on_step_start(loop, 10, 0.2)
    assert len(calls) == 1 and budget.summary()["steps_planned"] == [50, calls[0]]
    budget.deadline.clock = lambda: 95.0  # 95 + 10 s of reserve is past the deadline
    assert budget.should_stop(SimpleNamespace(accelerator=SimpleNamespace(num_processes=1), progress=SimpleNamespace(step=12)))
    assert "train.max_minutes" in budget.stop_reason and budget.summary()["stopped_at_deadline"] == 12

    kept = named(build_callbacks([], context))["Budget"]
    loop.fixed_plan = True  # a warm-up: the run keeps its plan, the deadline still guards it
    kept.setup(loop)
    assert kept.replan is None and kept.deadline is not None


@pytest.mark.parametrize("bad", [[0.0], [1.5], "0.1", [0.1, "x"]])
def test_budget_callback_refuses_bad_replan_points(bad):
    from datafree.callbacks import CallbackContext, build_callbacks
    from datafree.config import ConfigError

    with pytest.raises(ConfigError, match="replan_at is a list of fractions of the plan in \\(0, 1\\)"):
        build_callbacks([("budget", {"replan_at": bad})], CallbackContext(10, 100, False))
