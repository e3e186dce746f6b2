"""Supervised teacher training on real data, keeping checkpoints along the way (the teacher's route, for RCO)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from datafree import build
from datafree.io.checkpoint import atomic_write_text
from datafree.config import Config, ConfigError
from datafree.nets.evaluate import accuracy
from datafree.nets.feature_stats import (batchnorm_reference, record_teacher_stats, recorded_keys, recorded_stats_path,
                                    save_reference, stats_path)  # fmt: skip
from datafree.host_memory import keep_freed_host_memory
from datafree.optim import make_optimizer, make_schedule
from datafree.synthesis import synthesis_term_class
from datafree.io.runlog import RunLog


def train_teacher(config: Config) -> dict:
    """Train ``teacher.arch`` on ``data.name``; save teacher.safetensors, route/epoch_XXX.safetensors, teacher.json
    and teacher_metrics.jsonl (a line per epoch: mean training loss, test accuracy)."""
    from datafree.data import augment_batch, dataset_info, load_tensors

    t, d, arch = config.teacher_training, config.data, config.teacher.arch
    set_seed(t.seed)
    accelerator = Accelerator(mixed_precision="no")
    if config.runtime.keep_host_memory:  # the same allocator setting as the data-free run (datafree/host_memory.py)
        keep_freed_host_memory(accelerator.device)
    spec = build.image_spec(config)
    net = build.build_net(arch, spec)
    build.check_network(net, spec, f"teacher {arch!r}")
    info = dataset_info(d.name, like=d.like or None)
    kwargs = dict(root=d.root, download=d.download, like=d.like or None, fake_size=d.fake_size or None)
    train_set = load_tensors(d.name, train=True, **kwargs)  # in memory; augmented batch-wise below
    if t.images:  # a quick teacher on the first N images (the statistics recorded below read the same subset)
        train_set = TensorDataset(*(tensor[: t.images] for tensor in train_set.tensors))
    test_set = load_tensors(d.name, train=False, **kwargs)
    train_loader = DataLoader(train_set, batch_size=t.batch_size, shuffle=True, num_workers=d.num_workers, drop_last=True)
    if len(train_loader) == 0:  # drop_last leaves no batch: the schedule would span 0 steps
        raise ConfigError(f"the teacher's training set has {len(train_set)} images, fewer than one batch of "
                          f"teacher_training.batch_size = {t.batch_size}: lower the batch size or raise "
                          "teacher_training.images")  # fmt: skip
    test_loader = DataLoader(test_set, batch_size=d.eval_batch_size, num_workers=d.num_workers)
    opt = make_optimizer(t.optimizer, net.parameters(), t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                         nesterov=True)  # fmt: skip
    net, opt, train_loader, test_loader = accelerator.prepare(net, opt, train_loader, test_loader)
    schedule = make_schedule(opt, t.schedule, t.epochs * len(train_loader), t.milestones, t.gamma)  # stepped by hand

    out = Path(config.teacher_checkpoint)
    log = RunLog(out.parent, accelerator, fresh=True, metrics="teacher_metrics.jsonl")  # as every loop writes them
    meta = {"arch": arch, "num_classes": spec.num_classes, "dataset": d.name, "channels": spec.channels,
            "image_size": spec.image_size}  # fmt: skip
    history, start = [], time.perf_counter()
    for epoch in range(1, t.epochs + 1):
        net.train()
        loss_sum = torch.zeros((), device=accelerator.device)
        bar = tqdm(train_loader, desc=f"teacher {epoch}/{t.epochs}", disable=not accelerator.is_main_process, leave=False)
        for images, labels in bar:
            if t.augment:
                images = augment_batch(images, info)
            loss = F.cross_entropy(net(images), labels, label_smoothing=t.label_smoothing)
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
            schedule.step()
            loss_sum += loss.detach().float()
        acc = accuracy(net, test_loader, accelerator)
        history.append({"epoch": epoch, "test_acc": acc})
        log.write({"epoch": epoch, "step": epoch * len(train_loader), "time_s": round(time.perf_counter() - start, 3),
                   "train_loss": round(loss_sum.item() / len(train_loader), 6), "test_acc": acc})  # fmt: skip
        accelerator.print(f"teacher epoch {epoch}: test accuracy {acc:.4f}")
        if epoch % t.route_every == 0 or epoch == t.epochs:
            log.save_weights(net, f"route/epoch_{epoch:03d}.safetensors", {**meta, "epoch": epoch})
    result = {"teacher_acc": history[-1]["test_acc"], "epochs": t.epochs, "history": history, "checkpoint": str(out)}
    log.save_weights(net, out.name, {**meta, "test_acc": history[-1]["test_acc"]})
    if accelerator.is_main_process:
        atomic_write_text(out.with_suffix(".json"), json.dumps(result, indent=2))
        # pooled feature statistics (what a BN teacher carries anyway) and per-class ones, for the image priors
        images, labels = train_set.tensors
        batches = zip(images.split(1000), labels.split(1000))
        pooled, per_class = record_teacher_stats(accelerator.unwrap_model(net), batches, spec.num_classes)
        save_reference(pooled, stats_path(out), per_class)
    accelerator.wait_for_everyone()
    build.reset_accelerate()  # the distillation that may follow in this process picks its own precision
    return result


def train_members(config: Config) -> list[dict]:
    """Train every member of a several-teacher recipe (``[teacher] members``), each as its own lone teacher:
    its ``arch``, written to its ``checkpoint`` (route and statistics beside it), seeded by its ``seed`` (default
    teacher_training.seed + its index), with the recipe's [teacher_training]."""
    results = []
    for i, member in enumerate(config.teacher.members):
        c = copy.deepcopy(config)
        c.teacher.kind, c.teacher.members = "single", []
        c.teacher.arch, c.teacher.checkpoint = member["arch"], member["checkpoint"]
        c.teacher_training.seed = int(member.get("seed", config.teacher_training.seed + i))
        print(f"== member {i}: {member['arch']} (seed {c.teacher_training.seed}) -> {member['checkpoint']}", flush=True)
        results.append(train_teacher(c))
    return results


def record_for_recipe(config) -> Path:
    """Record a recipe's trained teacher's statistics on the recipe's real training set; returns the file."""
    from datafree.data import recipe_split

    spec = build.image_spec(config)
    net = build.load_teacher_net(config, spec)
    images, labels = recipe_split(config.data, train=True).tensors
    path = recorded_stats_path(config.teacher_checkpoint, config.teacher.stats)
    if path is None:
        raise ConfigError('[teacher] stats = "none" names no file to record into: set it to "" (beside the '
                          "checkpoint) or a path")
    pooled, per_class = record_teacher_stats(net, zip(images.split(1000), labels.split(1000)), spec.num_classes)
    save_reference(pooled, path, per_class)
    return path


def ensure_for_recipe(config) -> Path | None:
    """Record the statistics if the recipe uses them, its teacher has no BatchNorm and they are not there yet.

    For programs that own the whole chain (demo, benchmarks, search), right after the teacher is trained or found.
    """
    path, used = recorded_stats_path(config.teacher_checkpoint, config.teacher.stats), {t.name for t in config.synthesis if t.weight}
    if path is None:  # the weights-only case: nothing is recorded or read
        return None
    keys = recorded_keys(path) if path.exists() else set()
    # each term says what of the file it reads (SynthesisTerm.recorded_in): a file recorded before a term existed
    # lacks its part; a BatchNorm teacher's running statistics stand in for the pooled part
    missing = [cls for cls in map(synthesis_term_class, sorted(used)) if cls.recorded_in(keys) is False]
    if not missing or (all(getattr(cls, "batchnorm_suffices", False) for cls in missing)
                       and batchnorm_reference(build.build_net(config.teacher.arch, build.image_spec(config)))):  # fmt: skip
        return None
    print("== recording the teacher's feature statistics on its training data (teacher side, once)")
    return record_for_recipe(config)


def teacher_record(checkpoint: str | Path) -> dict:
    """The record ``train_teacher`` wrote beside a checkpoint (``teacher.json``: accuracy, epochs, history), or {} when
    there is none or it is not a JSON object: a found teacher's record is untrusted input, read only to describe it."""
    try:
        record = json.loads(Path(checkpoint).with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_teacher_accuracy(checkpoint: str | Path) -> float:
    """The real test accuracy ``train_teacher`` recorded beside ``checkpoint`` (``teacher.json``), for the benchmarks
    that report it; a clear error naming the file when there is none (a teacher saved by other means, or its record
    cut short), before the benchmark distills anything."""
    accuracy = teacher_record(checkpoint).get("teacher_acc")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0.0 <= accuracy <= 1.0:
        record = Path(checkpoint).with_suffix(".json")
        raise ConfigError(f"{record}: no teacher accuracy recorded beside the teacher {checkpoint} (train_teacher "
                          f"writes it as \"teacher_acc\" in [0, 1]); delete that folder so the benchmark trains the "
                          f"teacher again")  # fmt: skip
    return float(accuracy)


def found_teacher_note(config, record: dict) -> str | None:
    """What to tell the user when the recipe's teacher checkpoint already exists but its ``record``
    (:func:`teacher_record`) says it was trained for other epochs than the recipe's [teacher_training]: a teacher
    another command left at that path (a shorter training, another recipe) would otherwise be distilled and reported
    as if it were the recipe's. None when the record agrees or has no epochs. For programs that own the whole chain
    (demo, benchmarks)."""
    epochs = record.get("epochs")
    if epochs is None or epochs == config.teacher_training.epochs:
        return None
    return (f"the recipe trains its teacher {config.teacher_training.epochs} epochs, the one at "
            f"{config.teacher_checkpoint} was trained {epochs}; pass --retrain-teacher to train it as the recipe says")
