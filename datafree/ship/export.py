"""Export a finished run's synthetic data (generator images + teacher soft labels), so a student can be
distilled later without the generator in the loop (``train_dfl.py --from-export DIR`` or any ImageFolder code).

    python -m datafree.cli.export --run outputs/fmnist [--n 50000] [--out DIR] [--seed 0]

Format ``datafree-synthetic`` version 1, in the output folder (default ``<run>/synthetic``):

- ``images/<class>/<index>.png``: 8-bit PNGs (grayscale or RGB), one folder per teacher class named by the zero-padded
  class id (``000``, ``001``, ...), so ``torchvision.datasets.ImageFolder`` maps folder -> class id exactly. Every class
  has a folder; use ``ImageFolder(root, allow_empty=True)`` if some class received no image. ``<index>`` is the row
  of the image in ``synthetic.safetensors``.
- ``synthetic.safetensors``: ``images`` uint8 (N, C, H, W) = the PNG pixels; ``teacher_logits`` float32 (N, K);
  ``soft_labels`` float32 (N, K) = softmax(teacher_logits) (rows sum to 1); ``labels`` int64 (N,) = argmax.
- ``export.json``: n, num_classes, channels, image_size, mean, std, class names, class counts, dataset, teacher,
  source run. A network's input is ``(pixels / 255 - mean) / std``; the teacher's outputs were computed on exactly
  that input (after 8-bit rounding), so the labels describe the stored images, not the unrounded ones.

Sampling: the DAFL generator ends in a BatchNorm and was trained with batch statistics, so it is sampled the same way
(train-mode BN, batches of the run's ``train.batch_size``); ``z ~ N(0, I)`` from ``--seed``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from datafree import build
from datafree.io.checkpoint import CheckpointError, atomic_write_text, load_weights
from datafree.config import Config, from_dict
from datafree.nets.spec import ImageSpec
from datafree.io.viz import denormalize

FORMAT, VERSION = "datafree-synthetic", 1
TENSORS = "synthetic.safetensors"


@dataclass
class Run:
    """A finished data-free run, loaded back: its recipe, image spec, trained generator and frozen teacher."""

    run_dir: Path
    config: Config
    spec: ImageSpec
    generator: nn.Module
    teacher: nn.Module
    results: dict


def find_run(run_dir: str | Path) -> Path:
    """A run folder (has generator.safetensors); for a benchmark folder, its first seed."""
    run_dir = Path(run_dir)
    if (run_dir / "generator.safetensors").exists():
        return run_dir
    seeds = sorted(run_dir.glob("seed_*/generator.safetensors"))
    if seeds:
        return seeds[0].parent
    raise CheckpointError(f"{run_dir} is not a finished run: no generator.safetensors in it (nor in seed_*/). "
                          "Point --run at the output_dir of a completed train_dfl.py / benchmark run.")  # fmt: skip


def _resolve(path: str | Path, run_dir: Path) -> Path:
    """Relative paths in a run's config.json are relative to where it was launched: try cwd, then the run's parents."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    for base in [run_dir.resolve(), *run_dir.resolve().parents]:
        if (base / path).exists():
            return base / path
    return path


def load_run(run_dir: str | Path) -> Run:
    """Rebuild a run's generator and teacher from its folder (config.json + safetensors), on the CPU."""
    run_dir = find_run(run_dir)
    config = from_dict(json.loads((run_dir / "config.json").read_text()))
    config.teacher.checkpoint = str(_resolve(config.teacher_checkpoint, run_dir))
    config.data.root = str(_resolve(config.data.root, run_dir))
    spec = build.image_spec(config)
    generator = load_weights(build.build_generator(config, spec), run_dir / "generator.safetensors", what="generator")
    teacher = build.load_teacher_net(config, spec).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    results_path = run_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    return Run(run_dir, config, spec, generator, teacher, results)


def to_pixels(images: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
    """Teacher-space float images -> uint8 pixels (what a PNG holds)."""
    return (denormalize(images, spec.mean, spec.std) * 255).round().to(torch.uint8)


def to_input(pixels: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
    """uint8 pixels -> the normalized float input every network of the run expects."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (pixels.float() / 255 - mean) / std


@torch.no_grad()
def generate(run: Run, codes: torch.Tensor, batch_size: int | None = None, seed: int = 0, progress: bool = False):
    """Yield teacher-space images for ``codes``, batch by batch, as in training (train-mode BN, full batches).

    A last partial batch is padded with random codes so its batch statistics match training.
    """
    bs = batch_size or run.config.train.batch_size
    gen = torch.Generator().manual_seed(seed + 1)
    run.generator.train()
    for start in tqdm(range(0, len(codes), bs), desc="generating", disable=not progress, leave=False):
        chunk = codes[start : start + bs]
        pad = torch.randn(bs - len(chunk), codes.shape[1], generator=gen)
        yield run.generator(torch.cat([chunk, pad]))[: len(chunk)]


def latent_codes(run: Run, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` codes z ~ N(0, I), fixed by ``seed``."""
    return torch.randn(n, run.config.generator.latent_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample(run: Run, n: int = 0, seed: int = 0, batch_size: int | None = None,
           z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``n`` synthetic images (teacher space) and the teacher's logits on them; or those of the codes ``z``."""
    codes = z if z is not None else latent_codes(run, n, seed)
    images = torch.cat(list(generate(run, codes, batch_size, seed)))
    logits = torch.cat([run.teacher(images[i : i + 1024]) for i in range(0, len(images), 1024)])
    return images, logits


def _class_dir(k: int, num_classes: int) -> str:
    return f"{k:0{max(3, len(str(num_classes - 1)))}d}"


def _write_png(pixels: torch.Tensor, path: Path) -> None:
    from PIL import Image

    array = pixels.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path)


def export_synthetic(run_dir: str | Path, n: int, out: str | Path | None = None, seed: int = 0,
                     batch_size: int | None = None, overwrite: bool = False) -> Path:  # fmt: skip
    """Write ``n`` synthetic images + teacher soft labels in the format of this module's docstring; return the folder."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    run = load_run(run_dir)
    out = Path(out) if out else run.run_dir / "synthetic"
    if (out / TENSORS).exists() or (out / "images").exists():
        if not overwrite:
            raise FileExistsError(f"{out} already holds an export; pass --overwrite or another --out")
        shutil.rmtree(out / "images", ignore_errors=True)
    spec, k = run.spec, run.spec.num_classes
    codes = latent_codes(run, n, seed)
    pixels = torch.cat([to_pixels(x, spec) for x in generate(run, codes, batch_size, seed, progress=True)])
    with torch.no_grad():  # label exactly what is stored: the teacher sees the 8-bit images
        logits = torch.cat([run.teacher(to_input(pixels[i : i + 1024], spec)) for i in range(0, n, 1024)]).float()
    soft, labels = logits.softmax(dim=1), logits.argmax(dim=1)

    for c in range(k):
        (out / "images" / _class_dir(c, k)).mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(n), desc="writing PNGs", leave=False):
        _write_png(pixels[i], out / "images" / _class_dir(int(labels[i]), k) / f"{i:06d}.png")
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{TENSORS}.", suffix=".tmp")
    os.close(fd)
    save_file({"images": pixels.contiguous(), "teacher_logits": logits.contiguous(), "soft_labels": soft.contiguous(),
               "labels": labels.contiguous()}, tmp, metadata={"format": FORMAT, "version": str(VERSION)})  # fmt: skip
    os.replace(tmp, out / TENSORS)

    from datafree.report import class_names

    meta = {
        "format": FORMAT, "version": VERSION, "n": n, "num_classes": k, "channels": spec.channels,
        "image_size": spec.image_size, "mean": list(spec.mean), "std": list(spec.std),
        "class_names": class_names(run.run_dir, k), "class_counts": torch.bincount(labels, minlength=k).tolist(),
        "class_dirs": [_class_dir(c, k) for c in range(k)],
        "input_transform": "x = (pixels / 255 - mean) / std, per channel",
        "dataset": run.config.data.name if run.config.data.name != "fake" else f"fake (like {run.config.data.like})",
        "teacher_arch": run.config.teacher.arch, "teacher_checkpoint": run.config.teacher.checkpoint,
        "teacher_acc": run.results.get("teacher_acc"), "run_dir": str(run.run_dir), "seed": seed,
        "generator_batch_size": batch_size or run.config.train.batch_size,
    }  # fmt: skip
    atomic_write_text(out / "export.json", json.dumps(meta, indent=2))
    atomic_write_text(out / "README.md", "# Synthetic data export\n\nFormat " + __doc__.split("Format ", 1)[1])
    return out
