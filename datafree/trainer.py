"""The data-free loop under Accelerate. It receives built parts (datafree/build.py) and names no method.

One step (see docs/extending.md):
    z(seed, rank, step) --G--> x --teacher--> logits + features          (ONE forward)
      generator objective: sum of the recipe's [[synthesis]] terms        -> G update
      student objective: sum of the recipe's [[distill]] losses on x.detach()
                         (+ wrappers' penalties), student_steps times on the batches
                         the student-batch piece gives (as many as the callbacks leave:
                         none in a warm-up's first steps)                 -> S update(s)
      callbacks at step start and after each student update (EMA, wrappers' after-step hooks)
Everything else (evaluation, samples, checkpoints, logs) happens every N steps, never per step,
so the hot path has no host-device sync.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from datafree.io import checkpoint as ckpt
from datafree.callbacks import per_class_field, steps_without_student
from datafree.config import TrainConfig
from datafree.distill.objective import StudentWithLosses
from datafree.nets.evaluate import accuracy, class_counts, eval_loader, overall, per_class
from datafree.optim import set_total_steps, total_steps_of
from datafree.io.runlog import RunLog
from datafree.nets.spec import ImageSpec
from datafree.synthesis import SynthBatch
from datafree.io.trainstate import load_train_state, save_train_state
from datafree.io.viz import save_class_grid


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; training stopped and the last good checkpoint was kept."""


@dataclass
class Progress:
    """Counters that resume restores (saved with the loop's state by datafree.io.trainstate)."""

    step: int = 0
    best_acc: float = -1.0
    best_step: int = -1
    elapsed_s: float = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "best_acc": self.best_acc, "best_step": self.best_step, "elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.best_acc = int(state["step"]), float(state["best_acc"])
        self.best_step, self.elapsed_s = int(state["best_step"]), float(state["elapsed_s"])


def _complete_lines(path: Path) -> list[str]:
    """metrics.jsonl's lines, a torn last one (power loss, full disk mid-write) dropped with a warning."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            print(f"warning: {path}'s last line is incomplete (the run stopped mid-write); dropping it")
            lines = lines[:-1]
    return lines


class _ScheduleState:
    """The teacher source's schedule state as a checkpointable object."""

    def __init__(self, source):
        self.source = source

    def state_dict(self) -> dict:
        return self.source.schedule_state()

    def load_state_dict(self, state: dict) -> None:
        self.source.load_schedule_state(state)


class DataFreeTrainer:
    def __init__(self, train: TrainConfig, accelerator: Accelerator, parts, spec: ImageSpec,
                 eval_set: Dataset | None = None, eval_batch_size: int = 1000, num_workers: int = 0,
                 compile: bool = False):  # fmt: skip
        """``compile``: ``runtime.compile`` (the generator and the teacher through ``torch.compile``)."""
        self.config, self.accelerator, self.spec, self.parts = train, accelerator, spec, parts
        self.out = Path(train.output_dir)
        self.log = RunLog(self.out, accelerator)  # metrics lines and the best weights, as every loop writes them
        roles = parts.roles
        self.source = roles.invert
        self.teacher = accelerator.prepare_model(roles.invert, evaluation_mode=True)
        if roles.targets is not roles.invert:
            student_teacher = accelerator.prepare_model(roles.targets, evaluation_mode=True)
        else:
            student_teacher = self.teacher
        self.generator, self.student, self.opt_g, self.opt_s = accelerator.prepare(
            parts.generator, parts.student, parts.optimizer_g, parts.optimizer_s
        )
        self.sched_s, self.sched_g = parts.schedule_s, parts.schedule_g
        if compile:
            self.generator, self.teacher = torch.compile(self.generator), torch.compile(self.teacher)
            student_teacher = self.teacher if roles.targets is roles.invert else student_teacher
        self.objective, self.callbacks = parts.objective, list(parts.callbacks)
        self.progress = Progress()
        # generator-only steps first (a warm-up callback): no student update, no LR step
        self.generator_only_steps = steps_without_student(self.callbacks, train.steps)
        self.fixed_plan = any(callback.fixed_plan for callback in self.callbacks)  # keeps its step count
        for callback in self.callbacks:
            callback.setup(self)

        self.eval_loader = None
        if eval_set is not None:
            self.eval_loader = eval_loader(eval_set, eval_batch_size, num_workers, accelerator)
        self.synthesize = parts.synthesizer  # built on the bare modules: from here on it runs the prepared ones
        self.synthesize.bind(self.generator, self.teacher, student_teacher,
                             accelerator.prepare_model(roles.labeller, evaluation_mode=True)
                             if roles.labeller is not None else None)  # fmt: skip
        self.student_batches = parts.student_batches
        extra = self.student_batches.generated_images(train.student_steps)  # e.g. the fresh batches
        self.images_per_step = accelerator.num_processes * (train.batch_size + extra)  # once the student trains
        # what a checkpoint holds beside Accelerate's models/optimizers: saved by datafree.io.trainstate, never pickled
        self.resumable = {"schedule_s": self.sched_s, "schedule_g": self.sched_g, "progress": self.progress,
                          "teacher": _ScheduleState(self.source), "student_batches": self.student_batches}  # fmt: skip
        for i, callback in enumerate(self.callbacks):
            if callback.checkpoint_state() is not None:
                self.resumable[f"callback{i}_{type(callback).__name__}"] = callback.checkpoint_state()

    @property
    def student_net(self) -> nn.Module:
        """The bare student network (no losses, no DDP wrapper): what callbacks and wrappers act on."""
        return self.accelerator.unwrap_model(self.student).net

    @property
    def shipped_student(self) -> nn.Module:
        """The student whose accuracy we report and whose weights we save (a callback may ship another, e.g. EMA)."""
        for callback in self.callbacks:
            shipped = callback.shipped_student()
            if shipped is not None:
                return shipped
        return self.student

    def evaluate(self, model: nn.Module) -> float:
        return accuracy(model, self.eval_loader, self.accelerator)

    # ---- one step -------------------------------------------------------------------------------------
    def images_generated(self, steps: int) -> int:
        """Images the first ``steps`` steps made (generator-only steps make only the generator's batch)."""
        warm = min(steps, self.generator_only_steps) * self.accelerator.num_processes * self.config.batch_size
        return warm + max(0, steps - self.generator_only_steps) * self.images_per_step

    def train_step(self, step: int, updates: int | None = None) -> dict[str, torch.Tensor]:
        """One generator update and ``updates`` student updates: by default ``train.student_steps`` as the
        callbacks leave it (none in a warm-up's steps)."""
        acc, cfg = self.accelerator, self.config
        if updates is None:
            updates = cfg.student_steps
            for callback in self.callbacks:
                updates = callback.student_updates(step, updates)
        progress = step / cfg.steps
        self.source.set_progress(progress)
        for callback in self.callbacks:
            callback.on_step_start(self, step, progress)
        self.generator.train()
        self.student.train()
        through_student = self.objective.uses_student
        with acc.autocast():
            images, teacher_out = self.synthesize(step)
            synth = SynthBatch(images, teacher_out, self.synthesize.last_labels, self.frozen_student_logits)
            g_loss, terms = self.objective(synth, progress)
        for callback in self.callbacks:
            callback.on_synthesized(self, step, synth)
        if through_student or not updates:  # G's loss went through the student / no student update: G alone
            self._step(self.opt_g, g_loss)
        batch = (images.detach(), self.synthesize.student_targets(images, teacher_out))
        self.student_batches.remember(step, batch)
        s_loss, s_terms = None, {}
        for k in range(updates):
            images_k, targets_k = self.student_batches(step, k, batch)
            with acc.autocast():
                s_loss, s_terms, _ = self.student(images_k, targets_k, progress)
            if k == 0 and not through_student:  # disjoint graphs (images detached): one backward serves G and S
                self._step((self.opt_g, self.opt_s), g_loss + s_loss)
            else:
                self._step(self.opt_s, s_loss)
            for callback in self.callbacks:
                callback.on_student_update(self, step, progress)
        terms = {k: v.detach() for k, v in terms.items()}
        terms.update(s_terms)
        terms["g_total"] = g_loss.detach()
        self.sched_g.step()
        if updates:
            self.sched_s.step()
            terms["s_total"] = s_loss.detach()
        self._last = (batch[0], batch[1].logits)
        return terms

    def _step(self, optimizers, loss: torch.Tensor) -> None:
        optimizers = optimizers if isinstance(optimizers, tuple) else (optimizers,)
        self.accelerator.backward(loss)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def frozen_student_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Student logits with gradients to the images only (detached weights, outside DDP's bookkeeping)."""
        net = self.student_net
        params = {name: p.detach() for name, p in net.named_parameters()}
        return torch.func.functional_call(net, params, (images,))

    # ---- the loop -----------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train from ``progress.step`` (0, or where ``resume()`` left it) to ``train.steps``."""
        acc, cfg = self.accelerator, self.config
        start, t0 = self.progress.step, time.perf_counter() - self.progress.elapsed_s
        # per term, kept on device (no per-step sync): sum since the last log line, steps it was there, non-finite count
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        bad: dict[str, torch.Tensor] = {}
        bar = self._bar = tqdm(total=cfg.steps, initial=start, disable=not acc.is_main_process, desc="data-free",
                               dynamic_ncols=True)  # fmt: skip
        for step in itertools.count(start):  # to cfg.steps, which a callback may move (BudgetReplan)
            if step >= cfg.steps:
                break
            for name, value in self.train_step(step).items():  # the student's terms start after the warm-up
                value = value.float()
                sums[name] = sums[name] + value if name in sums else value
                bad[name] = bad[name] + ~torch.isfinite(value) if name in bad else (~torch.isfinite(value)).float()
                counts[name] = counts.get(name, 0) + 1
            done = step + 1
            self.progress.step, self.progress.elapsed_s = done, time.perf_counter() - t0
            stopper = next((c for c in self.callbacks if c.should_stop(self)), None)  # e.g. a search at its target
            stop = stopper is not None
            at = lambda every: done % every == 0 or done == cfg.steps or stop  # noqa: E731
            if at(cfg.log_every) or at(cfg.eval_every) or at(cfg.checkpoint_every):
                self._guard_finite(torch.stack(list(bad.values())), list(bad), done)
                record = {"step": done, "time_s": round(self.progress.elapsed_s, 3), "images": self.images_generated(done),
                          "lr_s": self.opt_s.param_groups[0]["lr"], "lr_g": self.opt_g.param_groups[0]["lr"]}  # fmt: skip
                totals = torch.stack(list(sums.values()))
                logged = (totals / torch.tensor(list(counts.values()), dtype=totals.dtype, device=totals.device)).tolist()
                record.update({k: round(v, 6) for k, v in zip(sums, logged)})
                sums, counts = {}, {}
                record.update(self._teacher_stats())
                if at(cfg.eval_every) and self.eval_loader is not None:
                    for callback in self.callbacks:
                        callback.on_evaluate(self)
                    hits = class_counts(self.shipped_student, self.eval_loader, self.accelerator)  # one pass
                    record["student_acc"] = overall(hits)
                    # per class too: the zoo's runs end apart by their Shirt, so its course is worth seeing
                    record["student_class_acc"] = per_class_field([None if a is None else round(a, 4) for a in per_class(hits)])
                    self.log.keep_best(record["student_acc"], done, self.progress,
                                       lambda: self._save_weights("student_best.safetensors"))  # fmt: skip
                for callback in self.callbacks:
                    callback.on_log(self, record)
                self.log.write(record, track=True)
                if acc.is_main_process:
                    bar.set_postfix({k: record[k] for k in ("s_total", "g_total", "student_acc") if k in record})
            if at(cfg.sample_every):
                self._save_samples(done)
            if at(cfg.checkpoint_every):
                self._save_state(done)
            bar.update(1)
            if stop:
                acc.print(f"stopped early at step {done} of {cfg.steps}: {stopper.stop_reason}")
                break
        bar.close()
        acc.wait_for_everyone()
        for callback in self.callbacks:  # e.g. the EMA: from here on the student IS its average
            callback.on_fit_end(self)
        self._save_weights("student_last.safetensors")
        if self.synthesize.real_images is None:  # a real transfer set leaves the generator untrained: nothing to ship
            self._save_weights("generator.safetensors", self.generator)
        summaries = {k: v for callback in self.callbacks for k, v in callback.summary().items()}
        return {"callbacks": summaries, "steps": self.progress.step, "best_acc": self.progress.best_acc, "best_step": self.progress.best_step,
                "wall_time_s": self.progress.elapsed_s,
                "images_generated": self.images_generated(self.progress.step), "student_steps": cfg.student_steps}  # fmt: skip

    def set_total_steps(self, steps: int) -> None:
        """Make the run ``steps`` long from here on: the loop, both LR schedules and every progress-scheduled
        weight follow (they read ``progress = step / train.steps``). Not with a callback whose steps are a fraction
        of the first plan (``fixed_plan``: the warm-up)."""
        if self.fixed_plan:
            raise ValueError("a run with a warm-up keeps the step count it was planned with")
        self.config.steps = steps
        set_total_steps(self.sched_g, steps)
        set_total_steps(self.sched_s, steps)
        if getattr(self, "_bar", None) is not None:
            self._bar.total = steps
            self._bar.refresh()

    # ---- every-N-steps helpers ------------------------------------------------------------------------
    def _guard_finite(self, bad: torch.Tensor, names: list[str], step: int) -> None:
        bad_total = self.accelerator.reduce(bad.clone(), reduction="sum")
        if bad_total.sum() > 0:
            which = [n for n, b in zip(names, bad_total.tolist()) if b > 0]
            last = ckpt.latest_state_dir(self.out / "checkpoints")
            raise NonFiniteLossError(
                f"loss term(s) {which} became NaN/inf before step {step}; training stopped. The last good "
                f"checkpoint is {last or 'none (no checkpoint was written yet)'}; nothing after it was saved. "
                "Lower generator.lr / student.lr, try runtime.mixed_precision=no, or check the loss weights."
            )

    @torch.no_grad()
    def _teacher_stats(self) -> dict:
        """How confident the teacher is on the current synthetic batch (over all processes). How its answers spread
        over the classes is the ``coverage`` callback's (``class_hist``, ``class_coverage``)."""
        probs = self.accelerator.gather(self._last[1].float().softmax(dim=1))
        return {"teacher_conf": round(float(probs.max(dim=1).values.mean()), 4)}

    def _save_samples(self, step: int) -> None:
        if self.accelerator.is_main_process:
            images, logits = self._last
            save_class_grid(images, logits.argmax(dim=1), self.out / "samples" / f"step_{step:07d}.png",
                            self.spec.num_classes, self.spec.mean, self.spec.std)  # fmt: skip

    def _save_weights(self, name: str, module: nn.Module | None = None) -> None:
        module = self.accelerator.unwrap_model(module if module is not None else self.student)
        if self.accelerator.is_main_process:
            is_student = isinstance(module, StudentWithLosses) and name.startswith("student")
            target = self.accelerator.unwrap_model(self.shipped_student) if is_student else module
            target = target.net if isinstance(target, StudentWithLosses) else target
            ckpt.save_weights(target, self.out / name, metadata={"step": self.progress.step})
            if isinstance(module, StudentWithLosses):  # the losses' own parameters (regressors...) beside it
                ckpt.save_weights(module, self.out / name.replace(".safetensors", "_with_losses.safetensors"))

    def _save_state(self, step: int) -> None:
        root = self.out / "checkpoints"
        folder = ckpt.new_state_dir(root, step)
        self.accelerator.save_state(str(folder))
        save_train_state(folder, self.accelerator.process_index, self.resumable)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            ckpt.commit_state_dir(root, folder)
        self._save_weights("student_last.safetensors")

    def resume(self) -> None:
        """Load the latest checkpoint (models, optimizers, the loop's own state); clear errors, nothing unpickled."""
        folder = ckpt.latest_state_dir(self.out / "checkpoints")
        if folder is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint under {self.out / 'checkpoints'}; start without --resume")
        ckpt.check_pickles(folder)
        try:
            self.accelerator.load_state(str(folder))
        except Exception as err:  # a truncated file or one that does not fit this recipe's networks
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise ckpt.CheckpointError(f"--resume: {folder} does not load into this run's networks ({first}); the "
                                       "recipe changed since it was written, or a file is damaged") from None  # fmt: skip
        load_train_state(folder, self.accelerator.process_index, self.resumable, self.accelerator.device)
        planned = total_steps_of(self.sched_g)  # the plan the checkpoint was written under (a budget may re-plan)
        if planned != self.config.steps and not self.fixed_plan:
            self.set_total_steps(planned)
        # drop metric lines the interrupted run wrote after its last checkpoint
        metrics_path = self.log.metrics_path
        if self.accelerator.is_main_process and metrics_path.exists():
            kept = [l for l in _complete_lines(metrics_path) if json.loads(l)["step"] <= self.progress.step]
            ckpt.atomic_write_text(metrics_path, "".join(k + "\n" for k in kept))
        self.accelerator.print(f"resumed from {folder} at step {self.progress.step}")
