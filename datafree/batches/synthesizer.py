"""Where the loop's images come from: latent -> G -> teacher, with the RNG that makes every batch reproducible.

``Synthesizer`` makes one batch and runs the ONE teacher forward that serves both the generator's objective
and the student's targets (a second forward only when a method gives the student another teacher). The
student-batch pieces (datafree/batches/) ask it for new batches and for relabelled ones.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from datafree.augment import AugmentSettings, augment
from datafree.nets.features import NetOutput
from datafree.nets.spec import ImageSpec

Batch = tuple[torch.Tensor, NetOutput]  # images (detached) and the student's targets


def latent_seed(seed: int, rank: int, step: int, draw: int = 0) -> int:
    """z at (seed, rank, step, draw) is fixed: ranks draw different batches and resume replays the same ones."""
    entropy = [seed, rank, step] + ([draw] if draw else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


class Augmenter:
    """A batch augmented as ``settings`` say (black fill in the teacher's normalized space), from the latent RNG."""

    def __init__(self, settings: AugmentSettings, spec: ImageSpec, device):
        self.settings = settings
        per_channel = lambda values: torch.tensor(list(values) * (spec.channels // len(values)), device=device)  # noqa: E731
        self.pixel_map = (per_channel(spec.mean), per_channel(spec.std))  # normalized <-> pixels in [0, 1]
        # pixel 0 in the teacher's normalized space, divided in Python floats (not from pixel_map's float32 values)
        # so the fill stays bit for bit what recipes without brightness were measured with
        black = [-m / s for m, s in zip(spec.mean, spec.std)]
        self.fill = torch.tensor(black * (spec.channels // len(black)), device=device)

    def __call__(self, images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return augment(images, self.settings, self.fill, rng, self.pixel_map)


def label_autocast(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager] | None:
    """The autocast of the teacher's no-grad forwards that label the student's extra batches (``runtime.label_precision``).

    "auto": bf16 where the device computes it natively (CUDA with bf16; a CPU with AMX or AVX512-BF16), else
    None (the loop's own precision). Gradients never flow through these
    forwards, so the generator's update is untouched; the student's targets are rounded to bf16's 8 bits.
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        native = (torch.cuda.is_bf16_supported() if device.type == "cuda"
                  else device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()))  # fmt: skip
        if not native:
            return None
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class Synthesizer:
    """latent(seed, rank, step, draw) -> generator -> (augment) -> teacher; the RNG also drives augmentation.

    With ``real_images`` (``train.transfer = "real"``) the batch at (seed, rank, step, draw) is drawn from those
    images instead (uniformly, with replacement, by the same seeded RNG: resumable, different per rank).
    """

    def __init__(self, generator: nn.Module, teacher: nn.Module, batch_size: int, latent_dim: int, seed: int,
                 rank: int, device, channels_last: bool = False, augmenter: Augmenter | None = None,
                 labels: Callable[[int, torch.device, torch.Generator], torch.Tensor] | None = None,
                 student_teacher: nn.Module | None = None, real_images: torch.Tensor | None = None,
                 label_autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                 labeller: nn.Module | None = None):  # fmt: skip
        self.generator, self.teacher, self.label_autocast = generator, teacher, label_autocast
        self.real_images = real_images.to(device) if real_images is not None else None  # once, not per batch
        self.student_teacher = student_teacher if student_teacher is not None else teacher
        self.labeller = labeller if labeller is not None else self.student_teacher  # e.g. BatchNorm folded
        self.batch_size, self.latent_dim, self.seed, self.rank = batch_size, latent_dim, seed, rank
        self.device, self.channels_last, self.augmenter = device, channels_last, augmenter
        self.make_labels = labels  # (n, device, rng) -> what each image is made for (a conditional generator)
        self.rng = torch.Generator(device=device)
        self.last_labels: torch.Tensor | None = None  # what the last batch was made for (classes or soft targets)

    def bind(self, generator: nn.Module, teacher: nn.Module, student_teacher: nn.Module | None = None,
             labeller: nn.Module | None = None) -> None:  # fmt: skip
        """Run on these modules from now on: the loop's prepared (distributed, compiled) ones. Built by
        datafree/build.py on the bare modules, the synthesizer is bound once the trainer has prepared them."""
        self.generator, self.teacher = generator, teacher
        self.student_teacher = student_teacher if student_teacher is not None else teacher
        self.labeller = labeller if labeller is not None else self.student_teacher

    def _reseed(self, step: int, draw: int, rank: int | None) -> None:
        """The RNG at (seed, rank, step, draw): this process's rank unless another is named (precise_bn: 0)."""
        self.rng.manual_seed(latent_seed(self.seed, self.rank if rank is None else rank, step, draw))

    def sample_latent(self, step: int, draw: int = 0, size: int | None = None, rank: int | None = None) -> torch.Tensor:
        self._reseed(step, draw, rank)
        return torch.randn((size or self.batch_size, self.latent_dim), generator=self.rng, device=self.device)

    def images(self, step: int, draw: int = 0, size: int | None = None,
               rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """(images, what they were made for) at (seed, rank, step, draw), before augmentation and the teacher:
        the generator's (told its classes: quota or i mod K), or real ones drawn by the same seeded RNG."""
        if self.real_images is not None:
            self._reseed(step, draw, rank)
            index = torch.randint(len(self.real_images), (size or self.batch_size,), generator=self.rng,
                                  device=self.rng.device)  # fmt: skip
            return self.real_images[index], None
        z = self.sample_latent(step, draw, size, rank)
        labels = None if self.make_labels is None else self.make_labels(len(z), self.device, self.rng)
        return (self.generator(z) if labels is None else self.generator(z, labels)), labels

    def layout(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def __call__(self, step: int, draw: int = 0, augmented: bool = False, for_student: bool = False,
                 size: int | None = None):  # fmt: skip
        """(images, teacher output): the generator's teacher, or the student's for a student-only batch;
        ``size`` images (default: the batch size)."""
        images, self.last_labels = self.images(step, draw, size)
        if augmented and self.augmenter is not None:
            images = self.augmenter(images, self.rng)
        images = self.layout(images)
        if for_student:  # a student-only batch: no gradient, so it may run at the labels' precision
            return images, self.label(images)
        return images, self.teacher(images)

    def relabelled(self, images: torch.Tensor, rng: torch.Generator) -> Batch:
        """A student-only batch made of ``images``: flipped / shifted / mixed with ``rng`` where the recipe asks,
        laid out, and labelled by the student's teacher (``label``)."""
        if self.augmenter is not None:
            images = self.augmenter(images, rng)
        images = self.layout(images)
        return images, self.label(images)

    def label(self, images: torch.Tensor) -> NetOutput:
        """The student's teacher on a student-only batch (through the labeller: BatchNorm folded where
        ``runtime.fold_batchnorm`` could), at ``runtime.label_precision`` (outputs in float32)."""
        if self.label_autocast is None:
            return self.labeller(images)
        with self.label_autocast():
            return self.labeller(images).float()

    def student_targets(self, images: torch.Tensor, teacher_out: NetOutput) -> NetOutput:
        """The student's targets for G's batch: the same forward unless the student has its own teacher; a student
        source that only adds to the inverted teacher's output (``TargetSource.extend``: SPEQ's self-teacher) reuses
        that forward."""
        if self.student_teacher is self.teacher:
            return teacher_out.detach()
        with torch.no_grad():
            extended = self.student_teacher.extend(images.detach(), teacher_out.detach())
            return extended if extended is not None else self.student_teacher(images.detach())
