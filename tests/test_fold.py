"""BatchNorm folded into the teacher's copy that labels the student's batches (datafree/nets/fold.py)."""

from __future__ import annotations

import torch
from torch import nn

from datafree.nets.features import FeatureTaps
from datafree.nets.fold import count_batchnorms, folded_copy
from tests.conftest import bn_teacher_config, folded_feature_run, randomized, tiny_config


class SmallBN(nn.Module):
    """conv-BN-ReLU, conv(bias)-BN, linear-BN1d-linear: every kind of fold fx does."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 8)  # 8x8 images
        self.bn3 = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn2(self.conv2(self.block(x))))
        return self.out(torch.relu(self.bn3(self.fc(x.flatten(1)))))


def test_folded_conv_has_the_hand_computed_weights_and_bias_and_the_same_function():
    """W' = W gamma / sqrt(var + eps), b' = (b - mu) gamma / sqrt(var + eps) + beta, per output channel."""
    torch.manual_seed(0)
    net = randomized(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 25, 4)))
    conv, bn = net[0], net[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    x = torch.randn(5, 2, 5, 5)
    folded = folded_copy(net, x[:2])
    assert folded is not None and count_batchnorms(folded) == 0
    fconv = next(m for m in folded.modules() if isinstance(m, nn.Conv2d))
    torch.testing.assert_close(fconv.weight, conv.weight * scale[:, None, None, None])
    torch.testing.assert_close(fconv.bias, (conv.bias - bn.running_mean) * scale + bn.bias)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_a_fold_leaves_the_network_as_it_was_and_its_hooks_silent():
    net = randomized(SmallBN()).train()  # a training-mode original: the copy is eval, the original stays as it is
    before = {k: v.clone() for k, v in net.state_dict().items()}
    taps = FeatureTaps(net, ["bn2", "bn3"])
    folded = folded_copy(net, torch.randn(2, 1, 8, 8))
    assert folded is not None and count_batchnorms(folded) == 0 and count_batchnorms(net) == 3
    assert net.training and not folded.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(p.requires_grad for p in folded.parameters())
    with torch.no_grad():
        net.eval()
        x = torch.randn(6, 1, 8, 8)
        expected = taps.run(x).logits  # the original's hooks still work ...
        taps._store = {}
        assert (expected - expected.mean(0)).abs().max() > 0.05  # the logits depend on the images: a real check
        torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)
        assert taps._store == {}  # ... and the copy's forward does not write into them
    taps.remove()


def test_nothing_to_fold_an_untraceable_net_or_a_wrong_fold_gives_none(monkeypatch):
    from datafree.nets import fold
    from datafree.models import create_model

    assert folded_copy(create_model("lenet5", num_classes=10), torch.randn(2, 1, 32, 32)) is None  # no BatchNorm

    class Branchy(SmallBN):  # data-dependent control flow: fx cannot trace it
        def forward(self, x):
            return super().forward(x) if x.sum() > 0 else -super().forward(x)

    assert folded_copy(randomized(Branchy()), torch.randn(2, 1, 8, 8)) is None

    real_fuse = fold.fuse

    def wrong_fuse(model, inplace=False):  # a fold that changes the function must be caught by the probe
        fused = real_fuse(model, inplace)
        next(m for m in fused.modules() if isinstance(m, nn.Conv2d)).weight.data.mul_(1.05)
        return fused

    monkeypatch.setattr(fold, "fuse", wrong_fuse)
    assert folded_copy(randomized(SmallBN()), torch.randn(2, 1, 8, 8)) is None


def test_the_loop_labels_the_students_fresh_batches_with_the_folded_teacher(tmp_path):
    """Same targets as the hooked teacher (up to rounding) from a copy without BatchNorm; the generator's own
    batch still goes through the teacher's BatchNorm layers (the statistics terms read their inputs)."""
    from datafree import build
    from datafree.teachers.base import FoldedSource

    trainer = build.trainer_from_config(bn_teacher_config(tmp_path))
    labeller = trainer.synthesize.labeller
    assert isinstance(labeller, FoldedSource) and count_batchnorms(labeller) == 0
    assert count_batchnorms(trainer.synthesize.teacher) == 5
    images, targets = trainer.student_batches(0, 1, trainer.synthesize(0))
    with torch.no_grad():
        exact = trainer.synthesize.student_teacher(images).logits
    assert targets.features == {}
    torch.testing.assert_close(targets.logits, exact, rtol=1e-4, atol=1e-4 * exact.abs().max().item())
    trainer.train_step(0)  # the step runs with it


def test_no_fold_when_switched_off_or_when_a_tap_the_student_reads_is_folded_away(tmp_path):
    from datafree import build

    off = build.trainer_from_config(bn_teacher_config(tmp_path / "off", fold_batchnorm=False))
    assert off.synthesize.labeller is off.synthesize.student_teacher
    config = bn_teacher_config(tmp_path / "bn")
    config.distill = tiny_config(tmp_path, distill=[  # AT on a BatchNorm's output: the folded copy has none
        {"name": "kd"}, {"name": "at", "params": {"student_layers": ["features.0.1"],
                                                  "teacher_layers": ["features.0.1"]}}]).distill  # fmt: skip
    features = build.trainer_from_config(config)
    assert features.synthesize.labeller is features.synthesize.student_teacher
    images, targets = features.student_batches(0, 1, features.synthesize(0))
    assert set(targets.features) >= {"features.0.1"}


def test_a_loss_that_reads_the_teachers_features_gets_them_from_the_folded_copy(tmp_path):
    """AT on the net's default taps (pooling outputs, after conv-BN-ReLU): the same maps as the hooked teacher's."""
    trainer = folded_feature_run(tmp_path, [{"name": "kd"}, {"name": "at"}], ["features.1", "features.3", "features.6"])
    trainer.train_step(0)


def test_a_tap_that_the_fold_changes_or_removes_gives_no_copy():
    """fx keeps module paths: a fused conv's output is its BatchNorm's, a folded BatchNorm is gone. A tap on the
    classifier's input (after the last fold) survives, with the original's values."""
    net = randomized(SmallBN())
    probe = torch.randn(2, 1, 8, 8)
    assert folded_copy(net, probe, taps=["conv2"]) is None  # fused with bn2: it would give bn2's output
    assert folded_copy(net, probe, taps=["bn2"]) is None  # folded away
    folded = folded_copy(net, probe, taps=["out:input", "block.2"])
    assert folded is not None
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        got, want = FeatureTaps(folded, ["out:input"]).run(x), FeatureTaps(net, ["out:input"]).run(x)
    torch.testing.assert_close(got.features["out:input"], want.features["out:input"], rtol=1e-5, atol=1e-5)


def test_a_source_whose_weights_change_gives_no_labeller_and_an_ensemble_folds_every_member(tmp_path):
    from datafree.nets.spec import ImageSpec
    from datafree.teachers.base import FoldedSource
    from datafree.teachers.mean_logits import MeanLogitsTeacher
    from datafree.teachers.base import Member
    from datafree.teachers.route import AnchorSource, RouteTeacher
    from datafree.teachers.single import SingleTeacher

    spec = ImageSpec(channels=1, image_size=8, num_classes=3)
    single = SingleTeacher(randomized(SmallBN()), spec, feature_layer="out:input")
    assert isinstance(single.labeller(), FoldedSource)
    single.fixed_weights = False  # as a route's sources declare: their weights are swapped in place to anchors
    assert single.labeller() is None
    assert not AnchorSource.fixed_weights and not RouteTeacher.fixed_weights
    nets = [randomized(SmallBN(), seed) for seed in (1, 2)]
    ensemble = MeanLogitsTeacher([Member("m0/", nets[0]), Member("m1/", nets[1])], spec, ["out:input", "out:input"])
    labeller = ensemble.labeller()
    assert isinstance(labeller, FoldedSource) and count_batchnorms(labeller) == 0
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(labeller(x).logits, (nets[0](x) + nets[1](x)) / 2, rtol=1e-5, atol=1e-5)


def test_a_grey_channels_last_network_reads_as_channels_last_and_its_folded_copy_computes_so():
    """A grey image's first conv, (C, 1, 3, 3), and a 1x1 conv are contiguous in both layouts: they must not make a
    channels_last network read as plain-contiguous, or its folded copy runs every layer in the slower layout."""
    from datafree.nets.netcheck import memory_format_of

    net = randomized(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1),
                                   nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Flatten(), nn.Linear(6 * 16, 3)))  # fmt: skip
    assert memory_format_of(net) == torch.contiguous_format
    net.to(memory_format=torch.channels_last)
    assert memory_format_of(net) == torch.channels_last
    x = torch.randn(2, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    folded = folded_copy(net, x)
    outputs = []
    for module in folded.modules():
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            module.register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        folded(x)
    assert len(outputs) == 4 and all(o.is_contiguous(memory_format=torch.channels_last) for o in outputs[1:])
    assert not outputs[1].is_contiguous()  # (2, 4, 8, 8) maps: only one layout holds


def test_a_grey_channels_last_user_teacher_is_given_back_channels_last(tmp_path):
    """The source converts the teacher to the run's layout and ``release`` restores the layout it came in: a grey
    network that came channels_last goes back channels_last (it read as plain-contiguous before, and went back so)."""
    from datafree import build

    config = tiny_config(tmp_path)
    spec = build.image_spec(config)
    net = build.build_net("vgg_bn_small", spec).to(memory_format=torch.channels_last)
    telling = [p for p in net.parameters() if p.dim() == 4 and not p.is_contiguous()]
    assert telling  # weights whose layout shows: the check below can fail
    source = build.build_teacher(config, spec, net)
    source.to(memory_format=torch.contiguous_format)  # whatever the run does with it
    source.release()
    assert all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in telling)
