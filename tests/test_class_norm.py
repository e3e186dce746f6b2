"""generator.class_norm: a per-class gain and shift after the conditional generator's BatchNorms (generators/conditional.py
ClassNorm), on where a batch cannot hold every class."""

import copy

import pytest
import torch

from generators import create_generator
from generators.conditional import ClassConditional, ClassNorm


def built(tmp_path, **generator):
    from datafree import build
    from tests.conftest import tiny_config

    like = generator.pop("like", None)
    config = tiny_config(tmp_path, data={"like": like} if like else {}, generator={"conditional": True, **generator})
    return build.build_generator(config, build.image_spec(config))


def norms(generator: torch.nn.Module) -> list[ClassNorm]:
    return [m for m in generator.modules() if isinstance(m, ClassNorm)]


def test_auto_puts_a_class_norm_after_each_affine_batchnorm_only_where_a_batch_cannot_hold_every_class(tmp_path):
    many = built(tmp_path, like="cifar100", class_norm="auto")  # K = 100 > batch 16
    assert len(norms(many)) == 3  # DAFL's generator: after its projection and after each of its two convolutions
    assert [n.gain.weight.shape for n in norms(many)] == [(100, n.norm.num_features) for n in norms(many)]
    assert all(torch.equal(n.gain.weight, torch.zeros_like(n.gain.weight)) for n in norms(many))  # the gain starts at 1
    assert all(0.4 < n.shift.weight.std().item() < 0.6 for n in norms(many))  # the classes start apart (std 0.5)
    few = built(tmp_path, class_norm="auto")  # K = 10 <= 16: the zoo's runs, unchanged (no new parameter, no random draw)
    assert norms(few) == [] and not any(".gain." in key or ".norm." in key for key in few.state_dict())
    assert len(norms(built(tmp_path, class_norm="on"))) == 3
    assert norms(built(tmp_path, like="cifar100", class_norm="off")) == []


def test_each_class_gets_its_own_features_soft_targets_blend_them_and_the_inner_generator_alone_is_plain():
    torch.manual_seed(0)
    inner = create_generator("dafl", latent_dim=16, image_size=32, channels=1, width=16, output="pixels")
    g = ClassConditional(inner, num_classes=5, latent_dim=16, class_norm=True).eval()
    z = torch.randn(1, 16).repeat(2, 1)
    labels = torch.tensor([1, 3])
    out = g(z, labels)
    with torch.no_grad():  # without the per-class shift the two images differ only through the latent's scale
        for n in norms(g):
            n.shift.weight.zero_()
        unshifted = g(z, labels)
        for n in norms(g):
            n.shift.weight.normal_(0, 0.5)
    assert not torch.allclose(out, unshifted)
    soft = torch.nn.functional.one_hot(labels, 5).float()
    assert torch.allclose(g(z, soft), g(z, labels), atol=1e-6)  # a one-hot soft target is its class
    assert g.classes.labels is None  # cleared after the forward: nothing stale for a later call
    latent = z * g.embed(labels)
    torch.testing.assert_close(inner(latent), _plain(inner, latent), rtol=0, atol=0)


def _plain(inner: torch.nn.Module, latent: torch.Tensor) -> torch.Tensor:
    """The inner generator with its ClassNorms swapped back for their BatchNorms."""
    plain = copy.deepcopy(inner)
    for parent in list(plain.modules()):
        for name, child in parent.named_children():
            if isinstance(child, ClassNorm):
                setattr(parent, name, child.norm)
    return plain(latent)


def test_a_deep_copy_makes_its_own_classes_as_the_original_does():
    """A moving average of the generator (the ema_generator batch piece) is a deep copy: its ClassNorms must read the
    classes the copy is asked for, not the original's (a forward hook holding the original would)."""
    torch.manual_seed(0)
    inner = create_generator("dafl", latent_dim=16, image_size=32, channels=1, width=16, output="pixels")
    g = ClassConditional(inner, num_classes=5, latent_dim=16, class_norm=True).eval()
    twin = copy.deepcopy(g)
    assert twin.classes is not g.classes and all(n.classes is twin.classes for n in norms(twin))
    z, labels = torch.randn(4, 16), torch.tensor([0, 1, 2, 4])
    torch.testing.assert_close(twin(z, labels), g(z, labels), rtol=0, atol=0)


def test_a_generator_saved_with_or_without_class_norm_is_refused_with_the_setting_that_loads_it(tmp_path):
    from safetensors.torch import save_file

    from datafree.io.checkpoint import CheckpointError, load_weights

    def make(class_norm: bool) -> ClassConditional:
        inner = create_generator("dafl", latent_dim=16, image_size=32, channels=1, width=16, output="pixels")
        return ClassConditional(inner, 100, 16, offset=True, class_norm=class_norm)

    save_file(make(False).state_dict(), str(tmp_path / "without.safetensors"))
    with pytest.raises(CheckpointError, match='written without generator.class_norm.*class_norm = "off"'):
        load_weights(make(True), tmp_path / "without.safetensors", "generator")
    load_weights(make(False), tmp_path / "without.safetensors", "generator")  # as it was
    save_file(make(True).state_dict(), str(tmp_path / "with.safetensors"))
    with pytest.raises(CheckpointError, match='written with generator.class_norm.*class_norm = "on"'):
        load_weights(make(False), tmp_path / "with.safetensors", "generator")
    load_weights(make(True), tmp_path / "with.safetensors", "generator")


@pytest.mark.parametrize("settings, needle", [({"class_norm": "yes"}, 'is "on"'),
                                              ({"class_norm": True}, "expects a str"),
                                              ({"class_norm": "on", "conditional": False}, "needs generator.conditional")])
def test_a_class_norm_setting_that_cannot_act_is_refused(tmp_path, settings, needle):
    from datafree.config import ConfigError, validate
    from tests.conftest import tiny_config

    with pytest.raises(ConfigError, match=needle):
        validate(tiny_config(tmp_path, generator=settings))
