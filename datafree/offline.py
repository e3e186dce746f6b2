"""Distill a student from an exported synthetic set (``python -m datafree.cli.export``): KD on the stored teacher
logits, evaluated on the real test set. Neither the generator nor the teacher is needed at this point.

Writes the same files as a data-free run into ``train.output_dir``: metrics.jsonl, results.json, report.md,
student_best/student_last.safetensors, config.json. No augmentation: the student sees the stored images as they are.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from datafree import build
from datafree.io.checkpoint import CheckpointError, atomic_write_text, readable_json
from datafree.config import Config, ConfigError
from datafree.distill import create_loss
from datafree.nets.evaluate import accuracy
from datafree.ship.export import FORMAT, TENSORS
from datafree.nets.features import NetOutput
from datafree.optim import make_optimizer, make_schedule
from datafree.io.runlog import Best, RunLog


def read_export(export_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """export.json + the tensors of an export folder, checked for the format this code understands."""
    export_dir = Path(export_dir)
    meta_path, tensor_path = export_dir / "export.json", export_dir / TENSORS
    if not meta_path.exists() or not tensor_path.exists():
        raise CheckpointError(f"{export_dir} is not a synthetic-data export (needs export.json and {TENSORS}); "
                              "make one with: python -m datafree.cli.export --run <run dir> --out " + str(export_dir))  # fmt: skip
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as err:
        raise CheckpointError(f"{meta_path} is not valid JSON ({err}); export it again") from None
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) != 1:
        raise CheckpointError(f"{meta_path}: format {meta.get('format')!r} v{meta.get('version')} is not {FORMAT} v1")
    try:
        return meta, load_file(str(tensor_path))
    except Exception as err:  # safetensors' own errors for a truncated or foreign file
        raise CheckpointError(f"{tensor_path} is unreadable or corrupt ({err}); export it again with "
                              f"python -m datafree.cli.export --run <run dir> --out {export_dir}") from None


class SyntheticSet(Dataset):
    """Exported images (normalized like the teacher's input) with the teacher's logits as the target."""

    def __init__(self, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.pixels, self.logits = tensors["images"], tensors["teacher_logits"].float()
        self.mean = torch.tensor(meta["mean"], dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(meta["std"], dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.pixels[i].float() / 255 - self.mean) / self.std, self.logits[i]


def _kd_terms(config: Config) -> list[tuple[float, torch.nn.Module]]:
    """The recipe's KD terms; other losses compare features the export does not store."""
    other = [t.name for t in config.distill if t.name != "kd"]
    if other:
        raise ConfigError(f"training from an export uses the stored teacher logits only; loss(es) {other} need "
                          "the teacher's features. Use --distill '[{\"name\":\"kd\"}]' or distill with the generator.")  # fmt: skip
    return [(t.weight, create_loss("kd", **t.params)) for t in config.distill]


def distill_from_export(config: Config, export_dir: str | Path) -> dict:
    """Train ``student.arch`` on an export for ``train.steps`` steps of KD; evaluate on the real test set."""
    from datafree.data import load_dataset
    from datafree.report import write_report

    meta, tensors = read_export(export_dir)
    spec = build.image_spec(config)
    theirs = (meta["channels"], meta["image_size"], meta["num_classes"])
    if theirs != (spec.channels, spec.image_size, spec.num_classes):
        raise ConfigError(f"the export holds {theirs} (channels, size, classes) but data.name={config.data.name!r} "
                          f"needs {(spec.channels, spec.image_size, spec.num_classes)}; use the recipe of the run it came from")  # fmt: skip
    terms = _kd_terms(config)
    t, s, out = config.train, config.student, Path(config.train.output_dir)
    accelerator = build.make_accelerator(config)
    set_seed(t.seed)
    net = build.build_net(s.arch, spec)
    build.check_network(net, spec, f"student {s.arch!r}")
    opt = make_optimizer(s.optimizer, net.parameters(), s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    sched = make_schedule(opt, s.schedule, t.steps, s.milestones, s.gamma)
    train_set = SyntheticSet(meta, tensors)
    loader = DataLoader(train_set, batch_size=t.batch_size, shuffle=True, drop_last=len(train_set) >= t.batch_size,
                        generator=torch.Generator().manual_seed(t.seed), num_workers=config.data.num_workers)  # fmt: skip
    d = config.data
    eval_set = load_dataset(d.name, root=d.root, train=False, download=d.download, like=d.like or None,
                            fake_size=d.fake_size or None)  # fmt: skip
    eval_loader = DataLoader(eval_set, batch_size=d.eval_batch_size, num_workers=d.num_workers)
    net, opt, loader, eval_loader = accelerator.prepare(net, opt, loader, eval_loader)

    main = accelerator.is_main_process
    log = RunLog(out, accelerator, fresh=True)  # metrics lines and the best weights, as every loop writes them
    if main:
        atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
    best, start, batches = Best(), time.perf_counter(), iter(loader)
    sums, since = torch.zeros(2, device=accelerator.device), 0  # s_kd (unweighted), s_total: summed on device
    bar = tqdm(total=t.steps, desc="from export", disable=not main, dynamic_ncols=True)
    for step in range(1, t.steps + 1):
        try:
            images, logits = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, logits = next(batches)
        net.train()
        with accelerator.autocast():
            student = NetOutput(net(images))
            values = [kd(student, NetOutput(logits)) for _, kd in terms]
            loss = sum(w * v for (w, _), v in zip(terms, values))
        accelerator.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        sums += torch.stack([sum(values), loss]).detach().float()
        since += 1
        at = lambda every: step % every == 0 or step == t.steps  # noqa: E731
        if at(t.log_every) or at(t.eval_every):
            record = {"step": step, "time_s": round(time.perf_counter() - start, 3),
                      "images": step * t.batch_size * accelerator.num_processes, "lr_s": opt.param_groups[0]["lr"],
                      **{k: round(v / since, 6) for k, v in zip(("s_kd", "s_total"), sums.tolist())}}  # fmt: skip
            sums, since = torch.zeros_like(sums), 0
            if at(t.eval_every):
                record["student_acc"] = accuracy(net, eval_loader, accelerator)
                log.keep_best(record["student_acc"], step, best,
                              lambda: log.save_weights(net, "student_best.safetensors", {"step": step}))  # fmt: skip
            log.write(record)
            if main:
                bar.set_postfix({k: record[k] for k in ("s_total", "student_acc") if k in record})
        bar.update(1)
    bar.close()
    wall = time.perf_counter() - start
    final_acc = accuracy(net, eval_loader, accelerator)
    from datafree.pipeline import hardware

    results = {
        "name": config.name, "source": "export", "export_dir": str(export_dir), "teacher_acc": meta.get("teacher_acc"),
        "student_acc_final": final_acc, "student_acc_best": best.best_acc if best.best_acc >= 0 else final_acc,
        "best_step": best.best_step, "steps": t.steps, "images_generated": meta["n"],
        "images_seen": t.steps * t.batch_size * accelerator.num_processes, "wall_time_s": round(wall, 2),
        "num_processes": accelerator.num_processes, "mixed_precision": accelerator.mixed_precision,
        "hardware": hardware(), "student_params": sum(p.numel() for p in net.parameters()),
    }  # fmt: skip
    log.save_weights(net, "student_last.safetensors", {"step": t.steps})
    if main:
        atomic_write_text(out / "results.json", readable_json(results))
        write_report(out, results, spec)
    accelerator.end_training()
    return results
