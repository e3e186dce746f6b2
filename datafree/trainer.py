"""The data-free loop under Accelerate: generator vs frozen teacher, student distilled on the same batch.

One step (see shared/design.md):
    z ~ N(0, I)  --G-->  x  --teacher-->  logits + features (ONE forward)
      generator objective (DAFL) on the teacher output        -> G update
      student objective (any registered losses) on x.detach()  -> S update(s)
Everything else (evaluation, samples, checkpoints, logs) happens every N steps, never per step,
so the hot path has no host-device sync.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from datafree import checkpoint as ckpt
from datafree.augment import augment
from datafree.config import Config
from datafree.distill.objective import StudentWithLosses
from datafree.evaluate import accuracy
from datafree.synthesis import (DAFLObjective, adversarial_loss, class_feature_stats_loss, feature_stats_loss,
                                moment_loss, total_variation_loss)  # fmt: skip
from datafree.teacher import Teacher
from datafree.viz import save_class_grid
from generators.conditional import balanced_labels


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; training stopped and the last good checkpoint was kept."""


@dataclass
class ImageSpec:
    """What synthetic images must look like for this teacher, and how to display them."""

    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)


@dataclass
class Progress:
    """Counters that resume restores (registered with ``accelerator.register_for_checkpointing``)."""

    step: int = 0
    best_acc: float = -1.0
    best_step: int = -1
    elapsed_s: float = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "best_acc": self.best_acc, "best_step": self.best_step, "elapsed_s": self.elapsed_s}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.best_acc = int(state["step"]), float(state["best_acc"])
        self.best_step, self.elapsed_s = int(state["best_step"]), float(state["elapsed_s"])


def lr_lambda(schedule: str, total_steps: int, milestones=(), gamma: float = 0.1):
    """Multiplier of the base LR at a step; schedulers are not ``prepare``d, so N processes step them once each."""
    if schedule == "constant":
        return lambda step: 1.0
    if schedule == "step":
        bounds = [int(m * total_steps) for m in milestones]
        return lambda step: gamma ** sum(step >= b for b in bounds)
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise ValueError(f"unknown LR schedule {schedule!r}")


def latent_seed(seed: int, rank: int, step: int, draw: int = 0) -> int:
    """z at (seed, rank, step, draw) is fixed: ranks draw different batches and resume replays the same ones."""
    entropy = [seed, rank, step] + ([draw] if draw else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def _on_device(reference: dict, device) -> dict:
    """A feature-statistics reference moved once to the training device (not per step)."""
    return {tap: (mean.to(device), var.to(device)) for tap, (mean, var) in reference.items()}


class DataFreeTrainer:
    def __init__(self, config: Config, accelerator: Accelerator, teacher: Teacher, student: StudentWithLosses,
                 generator: nn.Module, spec: ImageSpec, eval_set: Dataset | None = None):  # fmt: skip
        self.config, self.accelerator, self.spec = config, accelerator, spec
        self.out = Path(config.train.output_dir)
        t, s, g = config.train, config.student, config.generator
        if t.channels_last:
            generator, student, teacher = (m.to(memory_format=torch.channels_last) for m in (generator, student, teacher))

        opt_g = torch.optim.Adam(generator.parameters(), lr=g.lr, betas=tuple(g.betas))
        if s.optimizer == "sgd":
            opt_s = torch.optim.SGD(student.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
        else:
            opt_s = torch.optim.Adam(student.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        self.sched_s = torch.optim.lr_scheduler.LambdaLR(opt_s, lr_lambda(s.schedule, t.steps, s.milestones, s.gamma))

        self.teacher = accelerator.prepare_model(teacher, evaluation_mode=True)
        self.generator, self.student, self.opt_g, self.opt_s = accelerator.prepare(generator, student, opt_g, opt_s)
        if t.compile:
            self.generator, self.teacher = torch.compile(self.generator), torch.compile(self.teacher)
        self.progress = Progress()
        accelerator.register_for_checkpointing(self.sched_s, self.progress)
        self.ema = None  # exponential moving average of the student's weights: the student we ship, when on
        if t.ema_decay:
            net = accelerator.unwrap_model(self.student).net
            self.ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
            accelerator.register_for_checkpointing(self.ema)

        self.eval_loader = None
        if eval_set is not None:
            loader = DataLoader(eval_set, batch_size=config.data.eval_batch_size, shuffle=False,
                                num_workers=config.data.num_workers)  # fmt: skip
            self.eval_loader = accelerator.prepare_data_loader(loader)

        reduce_sum = (lambda x: accelerator.reduce(x, reduction="sum")) if config.synthesis.global_entropy else None
        y = config.synthesis
        self.objective = DAFLObjective(y.oh, y.a, y.ie, y.entropy_log, y.activation, reduce_sum, accelerator.num_processes)
        self.penultimate = teacher.penultimate
        self.feature_stats = _on_device(getattr(teacher, "feature_stats", {}), accelerator.device)
        self.class_feature_stats = _on_device(getattr(teacher, "class_feature_stats", {}), accelerator.device)
        self.z_generator = torch.Generator(device=accelerator.device)
        self._last_logged = 0  # step of the previous metrics line (loss terms are averaged since then)
        self._replay: list = [None] * config.train.replay  # ring buffer of (images, teacher output)
        self._augments = config.train.augment_flip or config.train.augment_shift > 0
        black = [-m / s for m, s in zip(spec.mean, spec.std)]  # pixel 0 in the teacher's normalized space
        self._fill = torch.tensor(black * (spec.channels // len(black)), device=accelerator.device)

    @property
    def images_per_step(self) -> int:
        """Images the generator makes per step over all processes (fresh batches for extra student steps count)."""
        t = self.config.train
        return t.batch_size * self.accelerator.num_processes * (t.student_steps if t.fresh_batches else 1)

    # ---- one step -------------------------------------------------------------------------------------
    def sample_latent(self, step: int, draw: int = 0) -> torch.Tensor:
        seed = latent_seed(self.config.train.seed, self.accelerator.process_index, step, draw)
        self.z_generator.manual_seed(seed)
        shape = (self.config.train.batch_size, self.config.generator.latent_dim)
        return torch.randn(shape, generator=self.z_generator, device=self.accelerator.device)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One generator update and ``student_steps`` student updates on one synthetic batch."""
        acc, cfg, adversarial = self.accelerator, self.config.train, self.config.synthesis.adv
        self.generator.train()
        self.student.train()
        with acc.autocast():
            images, teacher_out = self._synthesize(step)
            g_loss, terms = self.objective(teacher_out.logits, teacher_out.features[self.penultimate], self._targets())
            g_loss = g_loss + self._image_priors(images, teacher_out, terms)
            if adversarial:
                terms["g_adversarial"] = adversarial_loss(self._frozen_student(images), teacher_out.logits)
                g_loss = g_loss + adversarial * terms["g_adversarial"]
        if adversarial:  # G's loss went through the student: update G alone before the student learns
            self._step(self.opt_g, g_loss)
        batch = (images.detach(), teacher_out.detach())
        if cfg.replay:
            self._replay[step % cfg.replay] = batch
        for k in range(cfg.student_steps):
            images_k, targets_k = self._student_batch(step, k, batch)
            with acc.autocast():
                s_loss, s_terms, _ = self.student(images_k, targets_k, step / cfg.steps)
            if k == 0 and not adversarial:  # disjoint graphs (images detached): one backward serves G and S
                self._step((self.opt_g, self.opt_s), g_loss + s_loss)
            else:
                self._step(self.opt_s, s_loss)
            if self.ema is not None:
                self.ema.update_parameters(self.accelerator.unwrap_model(self.student).net)
        self.sched_s.step()
        terms.update(s_terms)
        terms["g_total"], terms["s_total"] = g_loss.detach(), s_loss.detach()
        self._last = (batch[0], batch[1].logits)
        return terms

    def _image_priors(self, images: torch.Tensor, teacher_out, terms: dict) -> torch.Tensor:
        """Optional priors (weights 0 = pure DAFL), logged as g_moment / g_tv / g_feature_stats / g_class_stats."""
        y, total = self.config.synthesis, images.new_zeros((), dtype=torch.float32)
        features = teacher_out.features
        priors = (("g_moment", y.moment, lambda: moment_loss(images)),
                  ("g_tv", y.tv, lambda: total_variation_loss(images)),
                  ("g_feature_stats", y.feature_stats, lambda: feature_stats_loss(features, self.feature_stats)),
                  ("g_class_stats", y.class_feature_stats,
                   lambda: class_feature_stats_loss(features, self.class_feature_stats, self._labels(teacher_out))))  # fmt: skip
        for name, weight, loss in priors:
            if weight:
                terms[name] = loss()
                total = total + weight * terms[name]
        return total

    def _labels(self, teacher_out) -> torch.Tensor:
        """The class of each synthetic image: the one it was made for, else the teacher's argmax."""
        targets = self._targets()
        return targets if targets is not None else teacher_out.logits.detach().argmax(dim=1)

    def _targets(self) -> torch.Tensor | None:
        """The classes a conditional generator made its batch for (None: the teacher's argmax, as in DAFL)."""
        if not self.config.generator.conditional:
            return None
        return balanced_labels(self.config.train.batch_size, self.spec.num_classes, self.accelerator.device)

    def _synthesize(self, step: int, draw: int = 0, augmented: bool = False):
        """Generate a batch and run the ONE teacher forward that serves both G's objective and S's targets."""
        images = self.generator(self.sample_latent(step, draw))
        images = self._augment(images) if augmented and self._augments else images
        if self.config.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, self.teacher(images)

    def _student_batch(self, step: int, k: int, batch: tuple):
        """The k-th student batch of a step: G's batch, a fresh one or a replayed one; augmented if asked."""
        cfg = self.config.train
        if k > 0 and cfg.fresh_batches:  # a new batch from the just-updated G: no G backward, ~1/3 of a step
            with torch.no_grad(), self.accelerator.autocast():
                return self._synthesize(step, draw=k, augmented=True)
        images, targets = batch
        if k > 0 and cfg.replay:  # extra student steps revisit recent batches (no new G/T work)
            images, targets = self._replay[(step - k) % cfg.replay] or batch
        if self._augments:  # the teacher relabels what the student actually sees
            with torch.no_grad(), self.accelerator.autocast():
                images = self._augment(images)
                if cfg.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = self.teacher(images)
        return images, targets

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.config.train
        return augment(images, cfg.augment_flip, cfg.augment_shift, self._fill, self.z_generator)

    def _step(self, optimizers, loss: torch.Tensor) -> None:
        optimizers = optimizers if isinstance(optimizers, tuple) else (optimizers,)
        self.accelerator.backward(loss)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def _frozen_student(self, images: torch.Tensor) -> torch.Tensor:
        """Student logits with gradients to the images only (detached weights, outside DDP's bookkeeping)."""
        net = self.accelerator.unwrap_model(self.student).net
        params = {name: p.detach() for name, p in net.named_parameters()}
        return torch.func.functional_call(net, params, (images,))

    # ---- the loop -----------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        acc, cfg = self.accelerator, self.config.train
        if resume:
            self._resume()
        metrics_path = self.out / "metrics.jsonl"
        start, t0 = self.progress.step, time.perf_counter() - self.progress.elapsed_s
        term_names: list[str] | None = None
        bad = None  # per-term count of non-finite values, kept on device (no per-step sync)
        sums = None
        bar = tqdm(total=cfg.steps, initial=start, disable=not acc.is_main_process, desc="data-free", dynamic_ncols=True)
        for step in range(start, cfg.steps):
            terms = self.train_step(step)
            values = torch.stack([v.float() for v in terms.values()])
            if term_names is None:
                term_names = list(terms)
                bad, sums = torch.zeros_like(values), torch.zeros_like(values)
            bad += ~torch.isfinite(values)
            sums += values
            done = step + 1
            self.progress.step, self.progress.elapsed_s = done, time.perf_counter() - t0
            at = lambda every: done % every == 0 or done == cfg.steps  # noqa: E731
            if at(cfg.log_every) or at(cfg.eval_every) or at(cfg.checkpoint_every):
                self._guard_finite(bad, term_names, done)
                record = {"step": done, "time_s": round(self.progress.elapsed_s, 3),
                          "images": done * self.images_per_step,
                          "lr_s": self.opt_s.param_groups[0]["lr"], "lr_g": self.opt_g.param_groups[0]["lr"]}  # fmt: skip
                logged = (sums / (done - self._last_logged)).tolist()
                record.update({k: round(v, 6) for k, v in zip(term_names, logged)})
                sums.zero_()
                self._last_logged = done
                record.update(self._teacher_stats())
                if at(cfg.eval_every) and self.eval_loader is not None:
                    record["student_acc"] = accuracy(self.shipped_student, self.eval_loader, acc)
                    if self.ema is not None:
                        record["student_acc_raw"] = accuracy(self.student, self.eval_loader, acc)
                    if record["student_acc"] > self.progress.best_acc:
                        self.progress.best_acc, self.progress.best_step = record["student_acc"], done
                        self._save_weights("student_best.safetensors")
                if acc.is_main_process:
                    with metrics_path.open("a") as fh:
                        fh.write(json.dumps(record) + "\n")
                    acc.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=done)
                    bar.set_postfix({k: record[k] for k in ("s_total", "g_total", "student_acc") if k in record})
            if at(cfg.sample_every):
                self._save_samples(done)
            if at(cfg.checkpoint_every):
                self._save_state(done)
            bar.update(1)
        bar.close()
        acc.wait_for_everyone()
        if self.ema is not None:  # from here on the student IS its average (final accuracy, saved weights, API)
            acc.unwrap_model(self.student).net.load_state_dict(self.ema.module.state_dict())
        self._save_weights("student_last.safetensors")
        self._save_weights("generator.safetensors", self.generator)
        return {"steps": cfg.steps, "best_acc": self.progress.best_acc, "best_step": self.progress.best_step,
                "wall_time_s": self.progress.elapsed_s,
                "images_generated": cfg.steps * self.images_per_step, "student_steps": cfg.student_steps}  # fmt: skip

    @property
    def shipped_student(self) -> nn.Module:
        """The student whose accuracy we report and whose weights we save: the EMA when train.ema_decay > 0."""
        return self.ema.module if self.ema is not None else self.student

    # ---- every-N-steps helpers ------------------------------------------------------------------------
    def _guard_finite(self, bad: torch.Tensor, names: list[str], step: int) -> None:
        bad_total = self.accelerator.reduce(bad.clone(), reduction="sum")
        if bad_total.sum() > 0:
            which = [n for n, b in zip(names, bad_total.tolist()) if b > 0]
            last = ckpt.latest_state_dir(self.out / "checkpoints")
            raise NonFiniteLossError(
                f"loss term(s) {which} became NaN/inf before step {step}; training stopped. The last good "
                f"checkpoint is {last or 'none (no checkpoint was written yet)'}; nothing after it was saved. "
                "Lower generator.lr / student.lr, try train.mixed_precision=no, or check the loss weights."
            )

    @torch.no_grad()
    def _teacher_stats(self) -> dict:
        """How confident and how class-balanced the teacher is on the current synthetic batch."""
        probs = self._last[1].float().softmax(dim=1)
        probs = self.accelerator.gather(probs)
        hist = torch.bincount(probs.argmax(dim=1), minlength=self.spec.num_classes)
        return {"teacher_conf": round(float(probs.max(dim=1).values.mean()), 4), "class_hist": hist.tolist()}

    def _save_samples(self, step: int) -> None:
        if self.accelerator.is_main_process:
            images, logits = self._last
            save_class_grid(images, logits.argmax(dim=1), self.out / "samples" / f"step_{step:07d}.png",
                            self.spec.num_classes, self.spec.mean, self.spec.std)  # fmt: skip

    def _save_weights(self, name: str, module: nn.Module | None = None) -> None:
        module = self.accelerator.unwrap_model(module if module is not None else self.student)
        if self.accelerator.is_main_process:
            target = module.net if isinstance(module, StudentWithLosses) and name.startswith("student") else module
            if self.ema is not None and target is not module:
                target = self.ema.module
            ckpt.save_weights(target, self.out / name, metadata={"step": self.progress.step})
            if isinstance(module, StudentWithLosses):  # the losses' own parameters (regressors...) beside it
                ckpt.save_weights(module, self.out / name.replace(".safetensors", "_with_losses.safetensors"))

    def _save_state(self, step: int) -> None:
        root = self.out / "checkpoints"
        folder = ckpt.new_state_dir(root, step)
        self.accelerator.save_state(str(folder))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            ckpt.commit_state_dir(root, folder)
        self._save_weights("student_last.safetensors")

    def _resume(self) -> None:
        folder = ckpt.latest_state_dir(self.out / "checkpoints")
        if folder is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint under {self.out / 'checkpoints'}; start without --resume")
        self.accelerator.load_state(str(folder))
        # drop metric lines the interrupted run wrote after its last checkpoint
        metrics_path = self.out / "metrics.jsonl"
        if self.accelerator.is_main_process and metrics_path.exists():
            kept = [l for l in metrics_path.read_text().splitlines() if l and json.loads(l)["step"] <= self.progress.step]
            ckpt.atomic_write_text(metrics_path, "".join(k + "\n" for k in kept))
        self._last_logged = self.progress.step
        self.accelerator.print(f"resumed from {folder} at step {self.progress.step}")
