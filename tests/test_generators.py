import pytest
import torch

from generators import create_generator, list_generators


def test_dafl_generator_shape_range_and_normalized_output():
    g = create_generator("dafl", latent_dim=10, image_size=32, channels=3, width=16)
    x = g(torch.randn(64, 10))
    assert x.shape == (64, 3, 32, 32)
    # final non-affine BN: each channel is zero-mean unit-variance over the batch (train mode)
    per_channel = x.transpose(0, 1).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.std(1, unbiased=False), torch.ones(3), atol=1e-2, rtol=0)


def test_dafl_generator_bn_eps_is_configurable_and_tanh_bounds_pre_bn():
    g = create_generator("dafl", latent_dim=8, image_size=16, channels=1, width=8, bn_eps=0.8)
    assert g.block1[2].eps == 0.8 and g.block2[2].eps == 0.8
    hidden = g.block2(g.block1(g.bn0(g.project(torch.randn(5, 8)).view(5, 8, 4, 4))))
    assert hidden.abs().max() <= 1.0  # tanh before the output BN


def test_unknown_generator_lists_known_ones():
    with pytest.raises(ValueError, match="dafl"):
        create_generator("stylegan9", latent_dim=8, image_size=32, channels=1)
    assert "dafl" in list_generators()


def test_image_size_must_be_multiple_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        create_generator("dafl", latent_dim=8, image_size=30, channels=1)


def test_pixels_output_stays_in_the_teachers_valid_input_range():
    mean, std = (0.2860,), (0.3530,)
    g = create_generator("dafl", latent_dim=8, image_size=16, channels=1, width=8, output="pixels", mean=mean, std=std)
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(50)  # drive tanh into saturation: the bounds must still hold
        x = g(torch.randn(32, 8))
    low, high = (0 - mean[0]) / std[0], (1 - mean[0]) / std[0]
    assert x.min() >= low - 1e-5 and x.max() <= high + 1e-5
    assert x.min() < low + 0.05 and x.max() > high - 0.05  # and it can reach black and white
    with pytest.raises(ValueError, match="pixels"):
        create_generator("dafl", latent_dim=8, image_size=16, channels=1, output="raw")


def test_conditional_generator_assigns_balanced_classes_through_a_learned_embedding():
    from generators import create_generator
    from generators.conditional import ClassConditional, balanced_labels

    assert balanced_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    torch.manual_seed(0)
    gen = ClassConditional(create_generator("dafl", latent_dim=8, image_size=8, channels=1, width=8, output="pixels"), 3, 8)
    z = torch.randn(1, 8).repeat(6, 1)  # one latent code, six positions = classes 0,1,2,0,1,2
    with torch.no_grad():
        gen.embed.weight.copy_(torch.tensor([[1.0] * 8, [2.0] * 8, [-1.0] * 8]))
        gen.eval()
        images = gen(z)
    assert images.shape == (6, 1, 8, 8)
    torch.testing.assert_close(images[0], images[3])  # same class, same code -> same image
    assert not torch.allclose(images[0], images[1])  # same code, another class -> another image
    with torch.no_grad():
        torch.testing.assert_close(images[1], gen.generator(z[:1] * 2.0)[0])  # class 1 scales z by its embedding


def test_conditional_run_targets_the_assigned_classes(tmp_path):
    import torch.nn.functional as F

    from datafree import build
    from datafree.synthesis import SynthBatch
    from tests.conftest import save_random_teacher, tiny_config

    config = tiny_config(tmp_path, generator={"conditional": True, "width": 16, "latent_dim": 16})
    save_random_teacher(config)
    trainer = build.trainer_from_config(config)
    generator = trainer.generator
    images, out = trainer.synthesize(0)
    targets = trainer.synthesize.last_labels
    assert targets.tolist() == [i % 10 for i in range(config.train.batch_size)]
    _, terms = trainer.objective(SynthBatch(images, out, targets))
    torch.testing.assert_close(terms["g_onehot"], F.cross_entropy(out.logits, targets))
    assert not torch.allclose(terms["g_onehot"], F.cross_entropy(out.logits, out.logits.argmax(1)))
    before = generator.embed.weight.detach().clone()
    trainer.train_step(0)
    assert not torch.equal(before, generator.embed.weight)  # the class embedding is trained with the generator


@pytest.mark.parametrize("size,seed", [(28, 7), (32, 8), (64, 8), (224, 7)])
def test_the_staged_generator_grows_from_a_small_seed_to_the_image_size(size, seed):
    from generators import create_generator
    from generators.staged import StagedGenerator

    torch.manual_seed(0)
    net = create_generator("staged", latent_dim=16, image_size=size, channels=3, width=8, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert isinstance(net, StagedGenerator) and net.seed == seed
    x = net(torch.randn(2, 16))
    assert x.shape == (2, 3, size, size)
    pixels = x * 0.25 + 0.5  # back from the teacher's normalization: bounded pixels
    assert float(pixels.min()) >= 0 and float(pixels.max()) <= 1


def test_at_224_px_and_1000_classes_the_staged_generator_stays_small_where_dafls_would_not():
    from generators import create_generator

    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    staged = create_generator("staged", latent_dim=1000, image_size=224, channels=3, width=64)
    assert count(staged) <= 15_000_000
    dafl_projection = 1000 * 128 * (224 // 4) ** 2  # DAFL's Linear alone at a 1000-d latent, width 128
    assert dafl_projection > 400_000_000


def test_auto_is_dafls_generator_up_to_32_px_bit_for_bit_and_above_the_one_for_half_the_size_enlarged():
    from generators import create_generator
    from generators.dafl import DAFLGenerator
    from generators.staged import StagedGenerator
    from generators.upsampled import Upsampled

    kwargs = dict(latent_dim=16, channels=1, width=16, output="pixels", mean=(0.3,), std=(0.35,))
    torch.manual_seed(0)
    auto = create_generator("auto", image_size=32, **kwargs)
    torch.manual_seed(0)
    dafl = create_generator("dafl", image_size=32, **kwargs)
    assert isinstance(auto, DAFLGenerator)
    assert all(torch.equal(a, b) for a, b in zip(auto.state_dict().values(), dafl.state_dict().values()))
    torch.manual_seed(0)
    auto64 = create_generator("auto", image_size=64, **kwargs)  # DAFL's at 32 px, enlarged: the same weights
    assert isinstance(auto64, Upsampled) and isinstance(auto64.inner, DAFLGenerator) and auto64.factor == 2
    assert all(torch.equal(a, b) for a, b in zip(auto64.inner.state_dict().values(), dafl.state_dict().values()))
    assert auto64(torch.randn(2, 16)).shape == (2, 1, 64, 64)
    auto128 = create_generator("auto", image_size=128, **kwargs)
    assert isinstance(auto128.inner, StagedGenerator) and auto128(torch.randn(2, 16)).shape == (2, 1, 128, 128)
    assert isinstance(create_generator("auto", image_size=36, **kwargs), StagedGenerator)  # 18 px: not a multiple of 4


def test_the_class_offset_only_where_a_batch_cannot_hold_every_class(tmp_path):
    """K > batch: the latent gets a per-class offset (classes differ in its mean, not only its spread); K <= batch:
    the scale alone, with no new parameter (the zoo's runs unchanged)."""
    from datafree import build
    from tests.conftest import tiny_config

    many = tiny_config(tmp_path, data={"like": "cifar100"}, generator={"conditional": True})  # K = 100 > batch 16
    few = tiny_config(tmp_path, generator={"conditional": True})  # K = 10 <= 16
    g_many = build.build_generator(many, build.image_spec(many))
    g_few = build.build_generator(few, build.image_spec(few))
    assert sorted(g_few.state_dict())[:1] == ["embed.weight"] and "offset.weight" not in g_few.state_dict()
    assert g_many.offset.weight.shape == (100, many.generator.latent_dim)
    z = torch.zeros(2, many.generator.latent_dim)
    seen = []
    g_many.generator.register_forward_pre_hook(lambda module, args: seen.append(args[0]))  # what it is handed
    g_many.eval()(z, torch.tensor([3, 7]))
    assert torch.equal(seen[0], g_many.offset.weight[[3, 7]])  # z = 0: the scale gives 0, the offset the class
    # the classes' codes start about 3 spreads apart (offset_std = 3), not 1: measured to make every class
    assert 2.6 < g_many.offset.weight.std().item() < 3.4, g_many.offset.weight.std()


def test_upsample_makes_the_images_at_half_size_and_enlarges_them_bilinearly_within_the_pixel_range(tmp_path):
    import torch.nn.functional as F

    from datafree import build
    from tests.conftest import tiny_config

    full = tiny_config(tmp_path, generator={"output": "pixels", "conditional": True})
    half = tiny_config(tmp_path, generator={"output": "pixels", "conditional": True, "upsample": 2})
    spec = build.image_spec(half)
    g_full, g_half = build.build_generator(full, spec).eval(), build.build_generator(half, spec).eval()
    z, labels = torch.randn(6, half.generator.latent_dim), torch.arange(6)
    out, small = g_half(z, labels), g_half.generator.inner(z * g_half.embed(labels))  # conditional, then enlarged
    assert out.shape == g_full(z, labels).shape == (6, spec.channels, spec.image_size, spec.image_size)
    assert small.shape[-2:] == (spec.image_size // 2, spec.image_size // 2)
    torch.testing.assert_close(out, F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False))
    assert not torch.allclose(out[:, :, ::2, ::2], out[:, :, 1::2, 1::2])  # bilinear, not a nearest-neighbour copy
    mean, std = torch.tensor(spec.mean).view(1, -1, 1, 1), torch.tensor(spec.std).view(1, -1, 1, 1)
    pixels = out * std + mean
    assert float(pixels.min()) >= -1e-6 and float(pixels.max()) <= 1 + 1e-6
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(g_half) < count(g_full)  # DAFL's projection to (s/4)^2 shrinks four times


@pytest.mark.parametrize("factor, needle", [(3, "must divide the image size 32"), (16, "must divide the image size 32"),
                                            (0, "whole factor >= 1")])  # fmt: skip
def test_an_upsample_the_image_size_cannot_take_is_refused_before_anything_is_written(tmp_path, factor, needle):
    from datafree.config import ConfigError
    from datafree.pipeline import distill_from_config
    from tests.conftest import save_random_teacher, tiny_config

    config = tiny_config(tmp_path, generator={"upsample": factor})
    save_random_teacher(config)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1}\n')  # an earlier run's log
    with pytest.raises(ConfigError, match=needle):
        distill_from_config(config)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"step": 1}\n'


@pytest.mark.parametrize("arch, size", [("dafl", 32), ("auto", 64), ("staged", 32)])
def test_tone_starts_as_the_identity_and_leaves_the_other_layers_random_start_as_it_was(arch, size):
    """A fresh generator with tone makes exactly the images, from exactly the weights, of one without it."""
    kwargs = dict(latent_dim=16, image_size=size, channels=3, width=16, output="pixels", mean=(0.5,), std=(0.28,))
    torch.manual_seed(0)
    plain = create_generator(arch, **kwargs)
    torch.manual_seed(0)
    toned = create_generator(arch, tone="on", **kwargs)
    extra = set(toned.state_dict()) - set(plain.state_dict())
    assert extra and all(key.split(".")[-2] == "tone" for key in extra)
    assert all(torch.equal(plain.state_dict()[k], toned.state_dict()[k]) for k in plain.state_dict())
    z = torch.randn(5, 16)
    assert torch.equal(plain(z), toned(z))


def test_tone_gives_each_image_its_own_colour_mix_from_its_latent_and_is_trained_by_the_loss():
    from generators.tone import LatentTone

    tone = LatentTone(latent_dim=4, channels=3)
    x, z = torch.randn(2, 3, 5, 5), torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    with torch.no_grad():  # M(z) = swap channels 0 and 1 for the first latent, b(z) = +2 on channel 2 for the second
        tone.weight.zero_()
        tone.weight[0 * 3 + 1, 0], tone.weight[1 * 3 + 0, 0] = 1.0, 1.0  # M[0, 1], M[1, 0] from z_0
        tone.weight[0 * 3 + 0, 0], tone.weight[1 * 3 + 1, 0] = -1.0, -1.0  # cancel the identity on channels 0, 1
        tone.weight[9 + 2, 1] = 2.0  # b[2] from z_1
    out = tone(x, z)
    torch.testing.assert_close(out[0], x[0][[1, 0, 2]])  # image 0: its channels 0 and 1 swapped
    torch.testing.assert_close(out[1], x[1] + torch.tensor([0.0, 0.0, 2.0]).view(3, 1, 1))  # image 1: shifted
    fresh = LatentTone(latent_dim=4, channels=3)
    fresh(x, z).square().mean().backward()
    assert fresh.weight.grad.abs().sum() > 0 and fresh.bias.grad.abs().sum() > 0  # zero start, not a dead end


def test_tone_auto_is_on_for_colour_teachers_only_and_a_generator_without_it_is_refused_first(tmp_path):
    from datafree import build
    from datafree.config import ConfigError, validate
    from datafree.pipeline import distill_from_config
    from generators import register_generator
    from generators.registry import _REGISTRY
    from tests.conftest import save_random_teacher, tiny_config

    def has_tone(config):
        net = build.build_generator(config, build.image_spec(config))
        return any("tone." in key for key in net.state_dict())

    rgb = dict(data={"like": "cifar10"}, teacher={"arch": "resnet18"})
    assert has_tone(tiny_config(tmp_path, generator={"tone": "auto", "output": "pixels"}, **rgb))
    assert not has_tone(tiny_config(tmp_path, generator={"tone": "auto", "output": "pixels"}))  # grey
    assert has_tone(tiny_config(tmp_path, generator={"tone": "on", "output": "pixels"}))  # asked for on grey
    assert not has_tone(tiny_config(tmp_path, **rgb))  # off unless asked (the dataclass default; old run folders)
    with pytest.raises(ConfigError, match="generator.tone"):
        validate(tiny_config(tmp_path, generator={"tone": "yes"}))

    @register_generator("no_tone_here")
    def no_tone_here(latent_dim, image_size, channels, width=16, bn_eps=0.8, output="bn", mean=(0.5,), std=(0.5,)):
        return create_generator("dafl", latent_dim, image_size, channels, width=width, output=output, mean=mean, std=std)

    try:  # "auto" (the default preset's) builds it without the tone; "on" is refused before anything is written
        assert not has_tone(tiny_config(tmp_path, generator={"arch": "no_tone_here", "tone": "auto"}, **rgb))
        config = tiny_config(tmp_path, generator={"arch": "no_tone_here", "tone": "on"})
        save_random_teacher(config)
        with pytest.raises(ConfigError, match="does not take generator.tone.*set generator.tone = \"off\""):
            distill_from_config(config)
        assert not (tmp_path / "run").exists()
    finally:
        _REGISTRY.pop("no_tone_here")


def test_a_generator_saved_without_tone_is_refused_with_the_setting_that_loads_it(tmp_path):
    """A colour run folder written before generator.tone (its config.json without the key) builds a toned
    generator under the default preset: the error says how to load the weights as they were."""
    from safetensors.torch import save_file

    from datafree.io.checkpoint import CheckpointError, load_weights

    kwargs = dict(latent_dim=16, image_size=32, channels=3, width=16, output="pixels")
    save_file(create_generator("dafl", **kwargs).state_dict(), str(tmp_path / "generator.safetensors"))
    with pytest.raises(CheckpointError, match='generator.tone = "off"'):
        load_weights(create_generator("dafl", tone="on", **kwargs), tmp_path / "generator.safetensors", "generator")
    load_weights(create_generator("dafl", **kwargs), tmp_path / "generator.safetensors", "generator")  # as it was


@pytest.mark.parametrize("tone", [True, "yes", None])
def test_a_tone_other_than_off_on_auto_is_refused_not_read_as_off(tone):
    with pytest.raises(ValueError, match='"off", "on" or "auto"'):
        create_generator("dafl", latent_dim=16, image_size=32, channels=3, width=16, output="pixels", tone=tone)
