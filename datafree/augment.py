"""Cheap on-device augmentation of synthetic batches before the teacher labels them for the student.

The generator tends to settle on a few poses per class; a random horizontal flip and a random shift of
a few pixels give the student more distinct images per generated one for the price of an index copy,
a random blur shows it the teacher's answers on images with less fine detail than the generator paints,
a random brightness widens the spread of intensities the generator's images have within a class,
a random recolouring shows the student the teacher's answers on colours the generator never paints,
mixes of two images give it points between classes, and the teacher relabels the augmented batch, so the
targets stay exact. Randomness comes from the caller's ``torch.Generator`` (seeded per step), so resume replays
the same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from datafree.config import ConfigError


@dataclass(frozen=True)
class AugmentSettings:
    """Which augmentations a student batch gets and how strongly: the ``[[batches]] augment`` piece's params, each
    off at its zero. :func:`augment` applies them in this order; a new augmentation is a field here (with its check
    below), its function in this file and one line in :func:`augment`."""

    flip: bool = False
    shift: int = 0  # pixels
    blur: float = 0.0  # the largest sigma, pixels
    brightness: float = 0.0  # factor in [1 - b, 1 + b]
    colour: float = 0.0  # strength in [0, 1]
    mix: float = 0.0  # fraction of the batch

    def __post_init__(self) -> None:
        where = '[[batches]] "augment":'
        if not isinstance(self.flip, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ConfigError(f"{where} flip is true/false and shift a number of pixels >= 0, got {self.flip!r}, "
                              f"{self.shift!r}")  # fmt: skip
        if not 0.0 <= self.mix <= 1.0:
            raise ConfigError(f"{where} mix is a fraction in [0, 1] of each student batch, got {self.mix}")
        if not 0.0 <= self.blur <= 4.0:
            raise ConfigError(f"{where} blur is the largest blur in pixels (0 = off, e.g. 1.0; at most 4), "
                              f"got {self.blur}")  # fmt: skip
        if not isinstance(self.brightness, (int, float)) or not 0.0 <= self.brightness < 1.0:
            raise ConfigError(f"{where} brightness is how far each image's pixel values are scaled, a factor in "
                              f"[1 - b, 1 + b] with b in [0, 1) (0 = off, e.g. 0.4), "
                              f"got {self.brightness!r}")  # fmt: skip
        if not isinstance(self.colour, (int, float)) or not 0.0 <= self.colour <= 1.0:
            raise ConfigError(f"{where} colour is how strongly each image is recoloured, in [0, 1] (0 = off, "
                              f"1 = any channel order and any range-keeping line per channel), "
                              f"got {self.colour!r}")  # fmt: skip
        for name in ("blur", "brightness", "colour", "mix"):  # validated numbers, kept as floats
            object.__setattr__(self, name, float(getattr(self, name)))

    def any_on(self) -> bool:
        return bool(self.flip or self.shift or self.blur or self.brightness or self.colour or self.mix)


def random_flip(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=rng, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_shift(images: torch.Tensor, max_shift: int, fill: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Translate each image by its own (dy, dx) in [-max_shift, max_shift]; uncovered pixels take ``fill``.

    ``fill`` holds one value per channel (black in the teacher's normalized space, as a padded crop gives).
    """
    if max_shift <= 0:
        return images
    n, c, h, w = images.shape
    padded = fill.view(1, c, 1, 1).to(images.dtype).expand(n, c, h + 2 * max_shift, w + 2 * max_shift).clone()
    padded[:, :, max_shift : max_shift + h, max_shift : max_shift + w] = images
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=rng, device=images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (n, h): source row of each output row
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (n, w)
    batch = torch.arange(n, device=images.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    out = rearrange(crops, "n h w c -> n c h w")
    return out.contiguous()


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur image i with a Gaussian of standard deviation ``sigma[i]`` pixels (> 0), truncated at ``radius``
    (separable, normalized taps, edges replicated)."""
    n, c, h, w = images.shape
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    taps = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma.float()[:, None] ** 2))
    taps = (taps / taps.sum(dim=1, keepdim=True)).to(images.dtype)  # (n, 2r + 1): one kernel per image
    kernels = taps.repeat_interleave(c, dim=0)  # (n * c, 2r + 1): the image's kernel for each of its channels
    planes = images.reshape(1, n * c, h, w)  # every channel of every image its own group
    planes = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), kernels.view(n * c, 1, 1, -1), groups=n * c)
    planes = F.conv2d(F.pad(planes, (0, 0, radius, radius), mode="replicate"), kernels.view(n * c, 1, -1, 1), groups=n * c)
    return planes.reshape(n, c, h, w)


def random_blur(images: torch.Tensor, max_sigma: float, rng: torch.Generator) -> torch.Tensor:
    """Blur each image with its own Gaussian of standard deviation sigma ~ U(0, max_sigma) pixels (separable,
    radius ceil(3 max_sigma), edges replicated); sigma near 0 leaves an image as it is.

    Why: the generator paints the fine detail the teacher's classes respond to more strongly than real images
    have it. On the zoo's MobileNet (one seed; ``runs/class_gap.py --blur 1`` / ``--sharpen 1``) blurring
    the real test images by sigma = 1 drops the share of the teacher's shirts the student also calls Shirt from
    0.36 to 0.15 and sharpening them lifts it to 0.52, while the teacher keeps 81% / 77% accuracy: the student
    learnt Shirt as "sharp", which real shirts are less. Relabelled by the teacher, blurred images teach the
    student the teacher's answers along that axis.
    """
    if max_sigma <= 0:
        return images
    sigma = (torch.rand(images.shape[0], generator=rng, device=images.device) * max_sigma).clamp_min(1e-3)
    return gaussian_blur(images, sigma, math.ceil(3 * max_sigma))


def random_brightness(images: torch.Tensor, amount: float, mean: torch.Tensor, std: torch.Tensor,
                      rng: torch.Generator) -> torch.Tensor:  # fmt: skip
    """Scale each image's pixel values by its own factor ~ U(1 - amount, 1 + amount), clipped to the pixel range
    [0, 1]; ``mean`` / ``std`` (one value per channel) map the teacher's normalized space to pixels and back.

    Why: within a class, the generator's images vary in brightness about half as much as real ones. On the
    zoo's GroupNorm -> MLP pair (seed 0, 2,560 images of the final generator against the real test set) the
    foreground's mean brightness had a per-class standard deviation of 0.06-0.10 on generated images and
    0.10-0.19 on real ones, with the same per-class means; the MLP student lost 13 points on the real test images
    darkened to half (x 0.5) where its teacher lost 7. The teacher's features hardly change with brightness, so
    the feature priors do not ask for this spread; relabelled by the teacher, jittered images teach the student
    the teacher's answers along that axis.
    """
    if amount <= 0:
        return images
    factor = 1 + amount * (2 * torch.rand(images.shape[0], generator=rng, device=images.device) - 1)
    mean, std = mean.view(1, -1, 1, 1).to(images.dtype), std.view(1, -1, 1, 1).to(images.dtype)
    pixels = (images * std + mean) * factor.view(-1, 1, 1, 1).to(images.dtype)
    return (pixels.clamp(0, 1) - mean) / std


def random_colour(images: torch.Tensor, strength: float, mean: torch.Tensor, std: torch.Tensor,
                  rng: torch.Generator) -> torch.Tensor:  # fmt: skip
    """Recolour each image: with probability ``strength`` its channels in a random order, then each channel's
    pixels mapped by its own line p -> a p + b with a ~ U(1 - 2 strength, 1) (below 0: the channel inverted) and b
    drawn so that [0, 1] maps into [0, 1] (no clipping); ``mean`` / ``std`` map the normalized space to pixels.
    ``strength`` 0 is the identity; 1 gives any permutation and any line that keeps the range.

    Why: a teacher whose classes do not depend on colour does not ask its generator for any, so the generator
    paints every image in one or two colours, and a student that only saw those learns features that do not
    fire on other colours. On ``fmnist-rgb64`` (a random canvas and ink colour per image) a fresh student
    trained by KD on real item shapes drawn in one fixed colour pair scores at chance on the real test images,
    and 49% with this recolouring at strength 1 (scratch check; real images in their own colours: 74%). In the
    loop, with the generator at 64 px before its tone (generators/tone.py; 3 seeds each), strength 1 lifted the
    data-free student of ``mobilenet_small_s2:mobilenet_tiny_s2@fmnist-rgb64`` from 19.3% to 56.0% and that of the
    ResNet pair from 14.9% to 28.2% (docs/changelog.md, 2026-12-07); on top of the tone, now the default's there,
    53.7% against 60.4% and 26.1% against 20.0% (seed 0; 2026-12-07, afternoon). An option, not a default: one pair
    each way, the only RGB task here is one whose colours are random by construction, and a teacher whose classes do
    depend on colour (natural images) was not measured. Relabelled by the teacher, so the targets stay exact:
    colour distortion as in SimCLR (Chen et al., ICML 2020) without assuming the teacher is invariant to it.
    """
    if strength <= 0:
        return images
    n, c = images.shape[:2]
    device, dtype = images.device, images.dtype
    mean, std = mean.view(1, -1, 1, 1).to(dtype), std.view(1, -1, 1, 1).to(dtype)
    pixels = images * std + mean
    if c > 1:
        order = torch.rand(n, c, generator=rng, device=device).argsort(dim=1)
        keep = torch.rand(n, generator=rng, device=device) >= strength
        order = torch.where(keep[:, None], torch.arange(c, device=device).expand(n, c), order)
        pixels = pixels.gather(1, order[:, :, None, None].expand_as(pixels))
    slope = 1 - 2 * strength * torch.rand(n, c, 1, 1, generator=rng, device=device)
    low, high = (-slope).clamp(min=0), (1 - slope).clamp(max=1)  # the offsets b that keep a [0, 1] -> [0, 1]
    offset = low + (high - low) * torch.rand(n, c, 1, 1, generator=rng, device=device)
    return (pixels * slope.to(dtype) + offset.to(dtype) - mean) / std


def random_mix(images: torch.Tensor, fraction: float, rng: torch.Generator) -> torch.Tensor:
    """Replace the first ``round(fraction * n)`` images by mixes ``lam * x_i + (1 - lam) * x_j`` with another image
    of the batch (j a random permutation, lam ~ U(0, 1) per image): mixup's images, without its mixed labels.

    The teacher relabels the mixes, so they are the points between two generated images where the student's
    targets are least certain: with a conditional generator (every class in every batch) most pairs cross a
    class boundary, the part of the teacher a student misses most (Shirt vs. T-shirt/Coat on Fashion-MNIST).
    """
    n = images.shape[0]
    mixed = round(fraction * n)
    if mixed <= 0:
        return images
    partner = torch.randperm(n, generator=rng, device=images.device)[:mixed]
    lam = torch.rand(mixed, generator=rng, device=images.device).to(images.dtype).view(-1, 1, 1, 1)
    mixes = lam * images[:mixed] + (1 - lam) * images[partner]
    return torch.cat([mixes, images[mixed:]])


def augment(images: torch.Tensor, settings: AugmentSettings, fill: torch.Tensor, rng: torch.Generator,
            pixel_map: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Flip and/or shift a batch, blur it, change each image's brightness, recolour it, then mix a fraction of it;
    identity when all are off (and no random draw for an augmentation that is off). ``fill``: black in the teacher's
    normalized space, one value per channel; ``pixel_map``: (mean, std) per channel, for the brightness and the
    colours."""
    if settings.flip:
        images = random_flip(images, rng)
    images = random_blur(random_shift(images, settings.shift, fill, rng), settings.blur, rng)
    if settings.brightness > 0:
        images = random_brightness(images, settings.brightness, *pixel_map, rng)
    if settings.colour > 0:
        images = random_colour(images, settings.colour, *pixel_map, rng)
    return random_mix(images, settings.mix, rng)
