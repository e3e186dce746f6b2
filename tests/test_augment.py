"""Flip/shift/blur/brightness/colour/mix of synthetic batches: exact geometry, per-channel fill, seeded, relabelled by the
teacher."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datafree.augment import (AugmentSettings, augment, random_blur, random_brightness, random_colour, random_flip,
                              random_mix, random_shift)
from tests.conftest import save_random_teacher, tiny_config


def _shifted(image: torch.Tensor, dy: int, dx: int, fill: torch.Tensor) -> torch.Tensor:
    """Reference: content moves by (dy, dx); built with pad + slice, independently of random_shift."""
    c, h, w = image.shape
    m = max(abs(dy), abs(dx), 1)
    canvas = fill.view(c, 1, 1).expand(c, h + 2 * m, w + 2 * m).clone()
    canvas[:, m : m + h, m : m + w] = image
    return canvas[:, m - dy : m - dy + h, m - dx : m - dx + w]


def test_shift_moves_each_image_by_its_own_offset_and_fills_with_black():
    images = torch.randn(64, 3, 6, 5)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = random_shift(images, 2, fill, torch.Generator().manual_seed(0))
    offsets = set()
    for img, got in zip(images, out):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if torch.equal(got, _shifted(img, dy, dx, fill))]
        assert len(matches) == 1, "every output is exactly one shifted copy of its input"
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets are drawn per image, not once per batch


def test_flip_mirrors_about_half_the_batch():
    images = torch.randn(200, 1, 4, 4)
    out = random_flip(images, torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 70 < sum(flipped) < 130


def test_augment_is_identity_when_off_and_reproducible_from_the_seed():
    images = torch.randn(8, 1, 8, 8)
    fill = torch.tensor([0.0])
    assert torch.equal(augment(images, AugmentSettings(), fill, torch.Generator()), images)
    a = augment(images, AugmentSettings(flip=True, shift=3), fill, torch.Generator().manual_seed(5))
    b = augment(images, AugmentSettings(flip=True, shift=3), fill, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, images)


def test_mix_replaces_the_given_fraction_by_convex_pairs_of_the_batch():
    # image i is the constant i: a mix of images a and b is the constant lam * a + (1 - lam) * b
    images = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 3, 3).contiguous()
    out = random_mix(images, 0.4, torch.Generator().manual_seed(3))
    assert torch.equal(out[4:], images[4:]), "the images past round(0.4 * 10) = 4 are untouched"
    for i, got in enumerate(out[:4]):
        assert torch.equal(got, got.flatten()[0].expand_as(got)), "a mix of two constant images is constant"
        value = got.flatten()[0].item()
        # some partner j and lam in [0, 1] give it: value = lam * i + (1 - lam) * j
        assert any(abs(value - i) < 1e-6 or (0 <= (value - j) / (i - j) <= 1) for j in range(10) if j != i)
    assert not torch.equal(out[:4], images[:4])
    assert torch.equal(random_mix(images, 0.0, torch.Generator()), images)


def test_mix_keeps_each_mix_between_its_two_images_elementwise():
    images = torch.randn(32, 2, 4, 4)
    out = random_mix(images, 1.0, torch.Generator().manual_seed(0))
    lo = torch.minimum(images[:, None], images[None]).amin(1)  # elementwise min over all images
    hi = torch.maximum(images[:, None], images[None]).amax(1)
    assert ((out >= lo - 1e-6) & (out <= hi + 1e-6)).all()
    # each output is lam * x_i + (1 - lam) * x_j with one lam for the whole image: solve for lam against every j
    for i, got in enumerate(out):
        fits = []
        for j in range(32):
            d = images[i] - images[j]
            if j == i or d.abs().max() < 1e-6:
                continue
            lam = ((got - images[j]) * d).sum() / (d * d).sum()
            fits.append(bool(torch.allclose(got, lam * images[i] + (1 - lam) * images[j], atol=1e-5)) and -1e-6 <= lam <= 1 + 1e-6)
        assert any(fits), f"output {i} is not a mix of image {i} with another image of the batch"


def test_blur_of_an_impulse_is_the_gaussian_of_a_sigma_in_range_and_keeps_constants():
    # a single bright pixel in the middle: the blurred image IS the (normalized, separable) kernel, so its
    # row through the centre is exp(-d^2 / 2 sigma^2) / sum, for one sigma in [0, max] per image
    n, size, max_sigma = 16, 15, 1.5
    images = torch.zeros(n, 2, size, size)
    images[:, :, 7, 7] = 1.0
    out = random_blur(images, max_sigma, torch.Generator().manual_seed(0))
    sigmas = []
    for got in out:
        torch.testing.assert_close(got[0], got[1])  # both channels get the image's kernel
        row = got[0, 7]
        if row[8] < 1e-20:  # sigma so small that the kernel is the impulse itself
            torch.testing.assert_close(got[0], images[0, 0])
            sigmas.append(0.0)
            continue
        sigma = (1 / (2 * torch.log(row[7] / row[8]))).sqrt()  # from the ratio of the centre to its neighbour
        d = torch.arange(-7, 8.0)
        expected = torch.exp(-(d**2) / (2 * sigma**2)) * (torch.arange(15) - 7).abs().le(5)  # radius ceil(3 * 1.5) = 5
        expected = expected / expected.sum()
        torch.testing.assert_close(row / row.sum(), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got[0], torch.outer(got[0, :, 7], got[0, 7]) / got[0, 7, 7])  # separable
        sigmas.append(float(sigma))
    assert all(0 <= s <= max_sigma + 1e-4 for s in sigmas) and max(sigmas) - min(sigmas) > 0.5  # drawn per image
    flat = torch.full((3, 1, 8, 8), 2.5)
    torch.testing.assert_close(random_blur(flat, 2.0, torch.Generator()), flat)  # edges replicated: no dark rim
    assert torch.equal(random_blur(images, 0.0, torch.Generator()), images)


def test_blur_off_draws_nothing_from_the_rng_so_recipes_without_it_keep_their_batches():
    images, fill = torch.randn(8, 1, 8, 8), torch.tensor([0.0])
    a, b, c = (augment(images, AugmentSettings(flip=True, shift=2, mix=0.5, **extra), fill,
                       torch.Generator().manual_seed(4)) for extra in ({}, {"blur": 0.0}, {"blur": 1.0}))  # fmt: skip
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_trainer_relabels_the_augmented_student_batch_with_the_teacher(tmp_path):
    config = tiny_config(tmp_path, train={"student_steps": 2, "augment_flip": True, "augment_shift": 2, "steps": 2})
    save_random_teacher(config)
    from datafree import build

    spec = build.image_spec(config)
    trainer = build.trainer_from_config(config)
    images, teacher_out = trainer.synthesize(0)
    seen, targets = trainer.student_batches(0, 0, (images.detach(), teacher_out.detach()))
    assert seen.shape == images.shape and not torch.equal(seen, images)
    with torch.no_grad():
        torch.testing.assert_close(targets.logits, trainer.teacher(seen).logits)
    # black fill is pixel 0 in the teacher's normalized space: (0 - mean) / std
    black = -spec.mean[0] / spec.std[0]
    edges = (seen[:, :, :2], seen[:, :, -2:], seen[..., :2], seen[..., -2:])
    border = torch.cat([e.flatten() for e in edges])
    assert (border == black).any()
    assert F.mse_loss(targets.logits, teacher_out.logits) > 0  # the labels really were recomputed


def _student_batch(tmp_path, **train):
    """(G's batch, what the student is served for update 0 of step 0, its targets, the trainer) under ``train``."""
    config = tiny_config(tmp_path, train={"student_steps": 2, "steps": 2, **train})
    save_random_teacher(config)
    from datafree import build

    trainer = build.trainer_from_config(config)
    images, teacher_out = trainer.synthesize(0)
    seen, targets = trainer.student_batches(0, 0, (images.detach(), teacher_out.detach()))
    return images, seen, targets, trainer


def test_trainer_mixes_the_student_batch_and_the_teacher_relabels_the_mixes(tmp_path):
    images, seen, targets, trainer = _student_batch(tmp_path, augment_mix=0.5)
    half = images.shape[0] // 2
    assert torch.equal(seen[half:], images[half:]) and not torch.equal(seen[:half], images[:half])
    with torch.no_grad():
        torch.testing.assert_close(targets.logits, trainer.teacher(seen).logits)


def test_trainer_blurs_the_student_batch_and_the_teacher_relabels_it(tmp_path):
    images, seen, targets, trainer = _student_batch(tmp_path, augment_blur=1.0)
    assert seen.shape == images.shape and not torch.allclose(seen, images)
    # a blur averages: no pixel rises above its image's brightest one
    assert (seen.amax(dim=(1, 2, 3)) <= images.amax(dim=(1, 2, 3)) + 1e-5).all()
    with torch.no_grad():
        torch.testing.assert_close(targets.logits, trainer.teacher(seen).logits)


@pytest.mark.parametrize("key, value", [("mix", 1.5), ("blur", -0.5), ("blur", 9.0)])
def test_augment_values_out_of_range_are_refused_naming_the_key(key, value):
    from datafree.build import check_batches
    from datafree.config import ConfigError, from_dict

    config = from_dict({"batches": [{"name": "augment", "params": {key: value}}]})
    with pytest.raises(ConfigError, match=f'"augment": {key} '):
        check_batches(config)
    old_spelling = from_dict({"train": {f"augment_{key}": value}})  # train.augment_mix: onto the same piece
    with pytest.raises(ConfigError, match=f'"augment": {key} '):
        check_batches(old_spelling)


def test_brightness_scales_each_images_pixels_by_its_own_factor_in_range_and_clips_to_the_pixel_range():
    mean, std = torch.tensor([0.3, 0.5]), torch.tensor([0.4, 0.2])
    pixels = 0.1 + 0.5 * torch.rand(64, 2, 6, 6, generator=torch.Generator().manual_seed(1))  # none clips below 1.5
    pixels[:, :, 0, 0] = 0.0  # black stays black
    pixels[:, :, 0, 1] = 1.0  # white clips at every factor above 1
    normalized = (pixels - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    out = random_brightness(normalized, 0.5, mean, std, torch.Generator().manual_seed(0))
    back = out * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    factor = back[:, :, 1:, :] / pixels[:, :, 1:, :]  # one factor per image, the same for every pixel and channel
    per_image = factor.flatten(1).median(dim=1).values
    torch.testing.assert_close(factor, per_image.view(-1, 1, 1, 1).expand_as(factor), rtol=1e-4, atol=1e-4)
    assert per_image.min() >= 0.5 - 1e-5 and per_image.max() <= 1.5 + 1e-5
    assert per_image.std() > 0.2  # spread over the range (U(0.5, 1.5) has std 0.29), not one factor for all
    assert torch.allclose(back[:, :, 0, 0], torch.zeros(64, 2), atol=1e-5)
    assert torch.allclose(back[:, :, 0, 1], per_image.clamp(max=1).view(-1, 1).expand(64, 2), atol=1e-5)
    assert torch.equal(random_brightness(normalized, 0.0, mean, std, torch.Generator()), normalized)


@pytest.mark.parametrize("key", ["brightness", "colour"])
def test_an_augmentation_left_off_draws_nothing_from_the_rng_so_recipes_without_it_keep_their_batches(key):
    images, fill = torch.randn(8, 3, 8, 8), torch.zeros(3)
    pixel_map = (torch.full((3,), 0.5), torch.full((3,), 0.28))
    a, b, c = (augment(images, AugmentSettings(flip=True, shift=2, mix=0.5, blur=1.0, **extra), fill,
                       torch.Generator().manual_seed(4), pixel_map)
               for extra in ({}, {key: 0.0}, {key: 0.4}))  # fmt: skip
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_trainer_changes_the_brightness_of_the_student_batch_and_the_teacher_relabels_it(tmp_path):
    config = tiny_config(tmp_path, train={"student_steps": 2, "steps": 2}, generator={"output": "pixels"},
                         batches=[{"name": "augment", "params": {"brightness": 0.4}}])  # fmt: skip
    save_random_teacher(config)
    from datafree import build

    spec = build.image_spec(config)
    trainer = build.trainer_from_config(config)
    images, teacher_out = trainer.synthesize(0)
    seen, targets = trainer.student_batches(0, 0, (images.detach(), teacher_out.detach()))
    pixels, seen_pixels = (x * spec.std[0] + spec.mean[0] for x in (images.detach(), seen))
    ratio = seen_pixels.flatten(1).sum(1) / pixels.flatten(1).sum(1)  # each image's total (pixels in [0, 1]: a
    # factor below 1 scales it exactly, one above 1 at most, where white clips)
    assert (ratio <= 1.4 + 1e-4).all() and (ratio >= 0.6 - 1e-4).all() and ratio.std() > 0.05
    with torch.no_grad():
        torch.testing.assert_close(targets.logits, trainer.teacher(seen).logits)


@pytest.mark.parametrize("key, value", [("brightness", -0.1), ("brightness", 1.0), ("brightness", "0.4"),
                                        ("colour", -0.1), ("colour", 1.5), ("colour", "1")])  # fmt: skip
def test_brightness_or_colour_out_of_range_is_refused_naming_the_key(key, value):
    from datafree.build import check_batches
    from datafree.config import ConfigError, from_dict

    config = from_dict({"batches": [{"name": "augment", "params": {key: value}}]})
    with pytest.raises(ConfigError, match=f'"augment": {key} '):
        check_batches(config)


def _lines(pixels: torch.Tensor, out: torch.Tensor) -> tuple[list[tuple[int, ...]], torch.Tensor]:
    """Reference: for each image, which input channel each output channel is an exact line of (slope, offset by
    least squares, residual ~ 0), and the slopes; independent of how random_colour draws them."""
    orders, slopes = [], []
    for src, dst in zip(pixels, out):
        order, slope = [], []
        for d in dst:
            fits = []
            for j, c in enumerate(src):
                design = torch.stack([c.flatten(), torch.ones(c.numel())], dim=1).double()
                coef = torch.linalg.lstsq(design, d.flatten().double().unsqueeze(1)).solution.squeeze(1)
                fits.append(((design @ coef - d.flatten().double()).abs().max().item(), j, coef[0].item()))
            residual, j, a = min(fits)
            assert residual < 1e-5, "each output channel is a line of one input channel"
            order.append(j), slope.append(a)
        orders.append(tuple(order)), slopes.append(slope)
    return orders, torch.tensor(slopes)


def test_colour_permutes_channels_and_maps_each_by_a_line_that_keeps_the_pixel_range():
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.28, 0.3, 0.2])
    pixels = torch.rand(200, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    pixels[:, :, 0, 0], pixels[:, :, 0, 1] = 0.0, 1.0  # the range's ends: they must land inside [0, 1]
    normalized = (pixels - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    recoloured = random_colour(normalized, 1.0, mean, std, torch.Generator().manual_seed(0))
    out = recoloured * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5  # kept in range by the line, not by clipping (exact lines)
    orders, slopes = _lines(pixels, out)
    assert all(sorted(o) == [0, 1, 2] for o in orders)  # a permutation: every input channel used once
    assert len(set(orders)) == 6  # all six orders occur over 200 images
    assert slopes.min() >= -1 - 1e-4 and slopes.max() <= 1 + 1e-4
    assert (slopes < 0).float().mean() > 0.3  # inverted channels occur (a ~ U(-1, 1))
    assert slopes.std() > 0.4


def test_colour_at_half_strength_keeps_the_order_of_about_half_and_never_inverts():
    mean, std = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.28, 0.28, 0.28])
    pixels = torch.rand(300, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    out = random_colour((pixels - 0.5) / 0.28, 0.5, mean, std, torch.Generator().manual_seed(1)) * 0.28 + 0.5
    orders, slopes = _lines(pixels, out)
    kept = sum(o == (0, 1, 2) for o in orders) / len(orders)
    assert 0.5 < kept < 0.7  # kept with probability 1/2, plus a random order that is the identity (1/12)
    assert slopes.min() >= -1e-4 and slopes.max() <= 1 + 1e-4  # a ~ U(0, 1): no channel inverted


def test_trainer_recolours_the_student_batch_and_the_teacher_relabels_it(tmp_path):
    config = tiny_config(tmp_path, train={"student_steps": 2, "steps": 2}, generator={"output": "pixels"},
                         batches=[{"name": "augment", "params": {"colour": 1.0}}])  # fmt: skip
    save_random_teacher(config)
    from datafree import build

    trainer = build.trainer_from_config(config)
    images, teacher_out = trainer.synthesize(0)
    seen, targets = trainer.student_batches(0, 0, (images.detach(), teacher_out.detach()))
    assert seen.shape == images.shape and not torch.allclose(seen, images.detach(), atol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(targets.logits, trainer.teacher(seen).logits)
