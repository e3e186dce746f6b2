"""Recipe (or the user's own networks) -> trained student + results.json + report.md, under one Accelerator."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import shutil
import statistics
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from datafree import build, netcheck
from datafree.adapt import adapt, check_adaptations
from datafree.callbacks import BudgetPlan
from datafree.io.checkpoint import atomic_write_text, readable_json
from datafree.config import Config, ConfigError, validate
from datafree.nets.evaluate import class_counts, confusion_counts, counts_of, eval_loader, overall, per_class
from datafree.host_memory import keep_freed_host_memory
from datafree.io.results import cpu_name
from datafree.nets.spec import ImageSpec
from datafree.teachers import TeacherSource


def hardware() -> str:
    """One line naming the machine, written beside every figure we report."""
    cpu = cpu_name()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    capability = torch.backends.cpu.get_cpu_capability()  # ATen's kernels: AVX2 runs ~2.5x fewer steps than AVX512
    return f"{cpu} ({os.cpu_count()} cores, ATen {capability}); {device}; torch {torch.__version__}"


def check_output_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """The run folder can be written, and a fresh run does not silently mix with an earlier run's checkpoints."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"train.output_dir {out} is a file; choose a folder")
    existing = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"train.output_dir {out} cannot be written ({existing} is read-only); choose another folder")
    if not resume and not overwrite and (out / "checkpoints" / "LATEST").exists():
        raise ConfigError(f"{out} holds an earlier run's checkpoints: continue it with --resume, choose another "
                          "train.output_dir, or set train.overwrite = true to replace that run")  # fmt: skip


def time_steps(config: Config, accelerator, teacher: TeacherSource, student_net: nn.Module, spec: ImageSpec,
               references: dict | None = None, probe_steps: int = 3) -> float:  # fmt: skip
    """Median seconds per step of the recipe's loop: ``probe_steps`` steps of a throw-away trainer, the first one
    a warm-up, and as many generator-only steps when a callback holds the student back for some of the first
    steps (a warm-up; weighted by their share of the plan); the student's
    weights are put back and its hooks removed. The median, not the mean: one step in a few runs 10-20% slow on
    a shared CPU, and a budget planned on it leaves that much of the run unused."""
    weights = {k: v.clone() for k, v in student_net.state_dict().items()}
    probe = build.build_trainer(config, accelerator, teacher, student_net, spec, None, references)

    def timed(generator_only: bool) -> float:
        updates = 0 if generator_only else config.train.student_steps
        probe.train_step(0, updates)
        seconds = []
        for step in range(1, probe_steps):
            start = time.perf_counter()
            probe.train_step(step, updates)
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    seconds, fraction = timed(False), probe.generator_only_steps / config.train.steps
    if fraction > 0:
        seconds = (1 - fraction) * seconds + fraction * timed(True)
    student_net.load_state_dict(weights)
    probe.parts.student.remove_hooks()
    return seconds


def seconds_per_step(config: Config, probe_steps: int = 3) -> float:
    """One step of a recipe's loop, timed on its own networks (benchmarks give methods equal time by it)."""
    teacher, student_net, spec = build.networks_from_config(config)
    seconds = time_steps(config, build.make_accelerator(config), teacher, student_net, spec, None, probe_steps)
    teacher.release()
    build.reset_accelerate()
    return seconds


def steps_for_budget(config: Config, accelerator, teacher: TeacherSource, student_net: nn.Module, spec: ImageSpec,
                     references: dict | None, resume: bool, started: float, eval_seconds: float = 0.0,
                     probe_steps: int = 6) -> tuple[Config, float]:  # fmt: skip
    """``train.steps`` that fit the run in ``train.max_minutes``, planned BEFORE step 0 (the schedules span it; the
    run re-plans at 10% and 50% from its own steps, :class:`~datafree.callbacks.BudgetReplan`).

    The budget is the whole run's, from ``started`` (before the networks were loaded) to the results written:
    what is already spent (loading, the teacher's and the untrained student's evaluations, this timing of
    ``probe_steps`` steps of a throw-away trainer, the median of all but the first) comes off it, and each evaluation the run will make (every ``train.eval_every`` steps,
    the last step, the end's per-class one) is costed at ``eval_seconds``, the untrained student's evaluation;
    5% is kept for checkpoints and the report. Returns the config and the timed seconds per step (0 on resume:
    a resumed run takes the number from the run folder's config.json, and its checkpoint's plan wins over that).
    """
    t = config.train
    if resume:
        saved = json.loads((Path(t.output_dir) / "config.json").read_text())["train"]["steps"]
        return dataclasses.replace(config, train=dataclasses.replace(t, steps=int(saved))), 0.0
    seconds = time_steps(config, accelerator, teacher, student_net, spec, references, probe_steps)
    left = 0.95 * t.max_minutes * 60 - (time.perf_counter() - started) - 2 * eval_seconds
    steps = max(1, int(left / (seconds + eval_seconds / t.eval_every)))
    if t.budget_mode == "cap":  # the recipe's train.steps where they fit (a fast machine runs the same steps)
        steps = min(steps, t.steps)
    accelerator.print(f"train.max_minutes = {t.max_minutes}: {seconds:.3f} s per step, {eval_seconds:.1f} s per "
                      f"evaluation, {time.perf_counter() - started:.0f} s spent -> train.steps = {steps}")  # fmt: skip
    return dataclasses.replace(config, train=dataclasses.replace(t, steps=steps)), seconds


def distill(config: Config, teacher: TeacherSource | nn.Module, student_net: nn.Module, spec: ImageSpec,
            eval_set: Dataset | None = None, feature_layer: str | None = None, resume: bool = False,
            references: dict | None = None, started: float | None = None) -> dict:  # fmt: skip
    """Data-free distillation of ``teacher`` (a source, or a user's network) into ``student_net``; returns (and
    writes) the results. ``references``: {synthesis term name: statistics} handed to those terms; ``started``:
    the ``time.perf_counter()`` that ``train.max_minutes`` counts from (default: this call)."""
    started = time.perf_counter() if started is None else started
    validate(config)  # a Config built in Python or loaded from TOML gets the same checks as the command line
    build.check_batches(config)
    build.check_callbacks(config, spec.num_classes)
    build.check_generator(config, spec)
    check_adaptations(config.train.adapt)
    out = Path(config.train.output_dir)
    check_output_dir(out, resume, config.train.overwrite)
    student_layout = netcheck.memory_format_of(student_net)
    accelerator = build.make_accelerator(config)
    kept = config.runtime.keep_host_memory and keep_freed_host_memory(accelerator.device)
    if not isinstance(teacher, TeacherSource):
        teacher = build.build_teacher(config, spec, teacher, feature_layer)
    teacher_net = next(iter(teacher.networks().values()))
    config, adapted = adapt(config, teacher_net, student_net)  # the preset's choices by the networks, said below
    for line in adapted:
        accelerator.print(f"adapted to these networks: {line}")
    teacher_confusion = untrained_acc = None
    eval_seconds = 0.0
    if eval_set is not None:
        loader = eval_loader(eval_set, config.data.eval_batch_size, config.data.num_workers, accelerator)
        teacher_confusion = confusion_counts(teacher_net, loader, accelerator)
        timer = time.perf_counter()  # the student's evaluation, timed: the budget costs the run's evaluations by it
        untrained_acc = overall(class_counts(student_net, loader, accelerator))
        eval_seconds = time.perf_counter() - timer
    seconds = 0.0
    if config.train.max_minutes:
        config, seconds = steps_for_budget(config, accelerator, teacher, student_net, spec, references, resume,
                                           started, eval_seconds)  # fmt: skip
        accelerator = build.make_accelerator(config)  # the timing's models stay out of the real run's state
    config, planned = adapt(config, teacher_net, student_net, phase="plan")  # the rules that read the run's length
    for line in planned:
        accelerator.print(f"adapted to the planned run: {line}")
    adapted += planned
    plan = None
    if seconds:  # a fresh budgeted run re-plans its length from its first steps, and stops if the machine slows
        def replanned(steps: int) -> None:  # config.train is the trainer's: its steps already moved
            if accelerator.is_main_process:
                atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))

        plan = budget_plan(config, started, seconds, eval_seconds, replanned)
    trainer = build.build_trainer(config, accelerator, teacher, student_net, spec, eval_set, references, plan)
    if resume:  # before anything is written: a resume that fails leaves the folder describing what it holds
        trainer.resume()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:  # every check has passed: only now is an earlier run's state removed
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
            (out / "metrics.jsonl").unlink(missing_ok=True)
        atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
    if config.train.trackers:
        accelerator.init_trackers(config.name, config=config.flat())  # typed: numbers stay numbers
    teacher_acc = overall(counts_of(teacher_confusion)) if teacher_confusion is not None else None
    if teacher_acc is not None:
        accelerator.print(f"teacher accuracy on the real test set: {teacher_acc:.4f}; the student's before "
                          f"training: {untrained_acc:.4f}")  # fmt: skip
    objective = trainer.parts.objective
    real = [f"{config.data.name}'s training images (train.transfer = real, labels unused)"]
    uses = real if config.train.transfer == "real" else objective.uses  # beyond the teacher's weights
    accelerator.print("the run reads: " + ("; ".join(uses) or "nothing beyond the teacher's weights and its input "
                      "normalization") + "".join(f"\n  {note}" for note in objective.notes))  # fmt: skip
    accelerator.print(f"the teacher's penultimate feature: {', '.join(teacher.penultimate_taps)} (feature_layer)")
    try:
        fit = trainer.fit()
        final_acc = class_acc = confusion = None
        if trainer.eval_loader is not None:  # in the layout it trained in: the same numbers as the last evaluation
            student_confusion = confusion_counts(trainer.student, trainer.eval_loader, accelerator)
            final_acc = overall(counts_of(student_confusion))
            matrices = {"teacher": teacher_confusion, "student": student_confusion}
            class_acc = {role: per_class(counts_of(matrix)) for role, matrix in matrices.items()}
            confusion = {role: matrix.tolist() for role, matrix in matrices.items()}  # [true class][predicted]
    finally:
        teacher.release()  # hooks off, requires_grad flags, train mode and memory format as they were
        trainer.parts.student.remove_hooks()
        student_net.to(memory_format=student_layout)  # trained in place, handed back in the layout it came in
    results = {
        "name": config.name,
        "teacher_acc": teacher_acc,
        "student_acc_untrained": untrained_acc,  # before step 0: what the distillation started from
        "student_acc_final": final_acc,
        "student_acc_best": fit["best_acc"] if fit["best_acc"] >= 0 else final_acc,
        "best_step": fit["best_step"],
        "steps": fit["steps"],
        "images_generated": fit["images_generated"],
        "student_steps_per_step": fit["student_steps"],
        **fit["callbacks"],  # every callback's summary (class coverage, quota, blends, the budget's plans...)
        "wall_time_s": round(fit["wall_time_s"], 2),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "hardware": hardware(),
        "host_memory_kept": kept,  # the process kept freed host memory for reuse (datafree/host_memory.py)
        "student_params": sum(p.numel() for p in student_net.parameters()),
        "teacher_params": sum(p.numel() for p in teacher.parameters()),
        "preset": config.preset,
        "transfer": config.train.transfer,  # "real": the student learnt from real training images (labels unused)
        "uses": uses,  # what the run read beyond the teacher's weights ([] = weights only)
        "penultimate_layer": list(teacher.penultimate_taps),  # where the activation term and its statistics read
        "terms_off": objective.notes,
        "adapted": adapted,  # what the preset's rules changed for these networks and plan, and why (datafree/adapt/)
        "class_acc": class_acc,  # per true class of the real test set: {"teacher": [...], "student": [...]}
        "confusion": confusion,  # image counts on the real test set, [true class][predicted class], per role
        **({"class_names": list(spec.class_names)} if spec.class_names else {}),
    }
    if accelerator.is_main_process:
        write_results(out, results, config, spec)
    accelerator.end_training()
    return results


def budget_plan(config: Config, started: float, seconds: float, eval_seconds: float,
                on_replan: Callable[[int], None]) -> BudgetPlan:  # fmt: skip
    """A budgeted run's plan for the ``budget`` callback (its re-plans and deadline), from the timed ``seconds`` per
    step and ``eval_seconds`` per evaluation: the deadline keeps one step, two evaluations and 2% of the budget in
    reserve, a re-plan another 2%."""
    budget, t = config.train.max_minutes * 60, config.train
    reserve = seconds + 2 * eval_seconds + 0.02 * budget
    most = t.steps if t.budget_mode == "cap" else None  # the plan, which the re-plans may not exceed
    return BudgetPlan(started + budget, reserve, reserve + 0.02 * budget, t.steps, eval_seconds, t.eval_every,
                      most_steps=most, on_replan=on_replan)  # fmt: skip


def write_results(out: Path, results: dict, config: Config, spec: ImageSpec) -> None:
    """results.json, report.md and MODEL_CARD.md of a finished run."""
    from datafree.ship.model_card import write_model_card
    from datafree.report import write_report

    atomic_write_text(out / "results.json", readable_json(results))
    write_report(out, results, spec)
    write_model_card(out, config, results, spec)


def distill_from_config(config: Config, resume: bool = False) -> dict:
    """The recipe path: registry networks, the recipe's teacher checkpoint, the real test set for evaluation."""
    from datafree.data import recipe_split

    started = time.perf_counter()  # train.max_minutes counts the networks' and the test set's loading too
    teacher, student_net, spec = build.networks_from_config(config)
    return distill(config, teacher, student_net, spec, recipe_split(config.data, train=False), resume=resume,
                   started=started)  # fmt: skip
