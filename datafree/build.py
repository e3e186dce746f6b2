"""The one place where recipe names become objects, with every check that needs a model done up front.

Nothing here trains. Everything that can be wrong with a recipe (names, checkpoint, class counts,
image sizes the teacher cannot take, loss parameters, feature taps) fails here, before step 0,
with a message that names the problem and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

from datafree import checkpoint as ckpt
from datafree.config import Config, ConfigError
from datafree.distill import create_loss, loss_class
from datafree.distill.objective import StudentWithLosses
from datafree.feature_stats import Reference, batchnorm_reference, load_reference, stats_path
from datafree.features import FeatureTaps
from datafree.teacher import Teacher
from datafree.trainer import ImageSpec
from generators import create_generator
from generators.conditional import ClassConditional


def resolve_precision(requested: str) -> str:
    """"auto" -> bf16 on CUDA devices that support it, fp32 on CPU.

    On CPU, bf16 autocast is ~2x faster for the DAFL step but was measured to kill the generator of the
    Fashion-MNIST recipe (all images constant, one class) by step 200; fp32 with the same seed lasted to
    step ~1,100. Speed that costs accuracy is not a default: ask for it with ``train.mixed_precision = "bf16"``.
    """
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "no"


def multiprocess_cpu() -> bool:
    """Launched as several processes on a machine without CUDA: use gloo on CPU instead of N lone processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def reset_accelerate() -> None:
    """Forget Accelerate's process-global state so a second phase (e.g. teacher, then distillation) may
    choose another mixed precision in the same process."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def make_accelerator(config: Config) -> Accelerator:
    trackers = list(config.train.trackers)
    return Accelerator(mixed_precision=resolve_precision(config.train.mixed_precision), cpu=multiprocess_cpu(),
                       log_with=trackers or None, project_dir=config.train.output_dir)  # fmt: skip


def image_spec(config: Config) -> ImageSpec:
    from datafree.data import dataset_info

    info = dataset_info(config.data.name, like=config.data.like or None)
    return ImageSpec(info.channels, info.image_size, info.num_classes, tuple(info.mean), tuple(info.std))


@torch.no_grad()
def check_network(net: nn.Module, spec: ImageSpec, role: str, taps: list[str] = ()) -> dict[str, tuple[int, ...]]:
    """Dry forward on a 2-image batch: the net must take the images and emit ``num_classes`` logits.

    Returns the per-sample shapes of the requested taps.
    """
    x = torch.zeros(2, spec.channels, spec.image_size, spec.image_size,
                    device=next(iter(net.parameters()), torch.zeros(())).device)  # fmt: skip
    was_training = net.training
    net.eval()
    hooks = FeatureTaps(net, list(taps))
    try:
        out = hooks.run(x)
    except RuntimeError as err:
        raise ConfigError(
            f"the {role} ({type(net).__name__}) cannot take images of shape ({spec.channels}, {spec.image_size}, "
            f"{spec.image_size}): {str(err).splitlines()[0]}. Use the image size / channel count the {role} was "
            "built for (data.name / data.like decide them) or another architecture."
        ) from None
    finally:
        hooks.remove()
        net.train(was_training)
    logits = out.logits
    if logits.ndim != 2 or logits.shape[1] != spec.num_classes:
        raise ConfigError(f"the {role} outputs {tuple(logits.shape[1:])} logits per image but the dataset has "
                          f"{spec.num_classes} classes; build it with num_classes={spec.num_classes}")  # fmt: skip
    return {name: tuple(value.shape[1:]) for name, value in out.features.items()}


def build_net(arch: str, spec: ImageSpec) -> nn.Module:
    from datafree.models import create_model

    return create_model(arch, num_classes=spec.num_classes, in_channels=spec.channels)


def load_teacher_net(config: Config, spec: ImageSpec) -> nn.Module:
    net = build_net(config.teacher.arch, spec)
    check_network(net, spec, f"teacher {config.teacher.arch!r}")
    path = Path(config.teacher_checkpoint)
    meta = ckpt.read_metadata(path) if path.exists() and path.suffix == ".safetensors" else {}
    if meta.get("num_classes") and int(meta["num_classes"]) != spec.num_classes:
        raise ConfigError(f"teacher checkpoint {path} has {meta['num_classes']} classes but dataset "
                          f"{config.data.name!r} has {spec.num_classes}; use a matching teacher or dataset")  # fmt: skip
    return ckpt.load_weights(net, path, what="teacher checkpoint")


def build_student(config: Config, student_net: nn.Module, teacher_net: nn.Module, spec: ImageSpec) -> StudentWithLosses:
    """Create each recipe loss, fill default feature taps from the models, and size owned parameters."""
    losses, weights = [], []
    for term in config.distill:
        params = dict(term.params)
        if getattr(loss_class(term.name), "uses_default_taps", False):
            for key, net in (("student_layers", student_net), ("teacher_layers", teacher_net)):
                if params.get(key) is None:
                    default = getattr(net, "default_taps", None)
                    if not default:
                        raise ConfigError(f"loss {term.name!r} needs feature layers but {type(net).__name__} declares "
                                          f"no default_taps; set params.{key} in the recipe "
                                          "(list layers with `python -m datafree.models <arch>`)")  # fmt: skip
                    params[key] = list(default)
        loss = create_loss(term.name, **params)
        student_shapes = check_network(student_net, spec, "student", list(loss.student_taps))
        teacher_shapes = check_network(teacher_net, spec, "teacher", list(loss.teacher_taps))
        loss.setup(student_shapes, teacher_shapes)
        losses.append(loss)
        weights.append({"weight": term.weight, "schedule": term.schedule, "end_weight": term.end_weight,
                        "milestones": list(term.milestones), "gamma": term.gamma})  # fmt: skip
    return StudentWithLosses(student_net, losses, weights)


def build_generator(config: Config, spec: ImageSpec) -> nn.Module:
    g = config.generator
    generator = create_generator(g.arch, latent_dim=g.latent_dim, image_size=spec.image_size, channels=spec.channels,
                                 width=g.width, bn_eps=g.bn_eps, output=g.output, mean=spec.mean, std=spec.std)  # fmt: skip
    return ClassConditional(generator, spec.num_classes, g.latent_dim) if g.conditional else generator


def feature_stats_reference(config: Config, teacher_net: nn.Module, spec: ImageSpec,
                            given: Reference | None = None, per_class: bool = False) -> Reference:  # fmt: skip
    """The teacher's training-set feature statistics a prior needs (pooled, or per class), checked against it.

    Source, in order: ``given`` (API), the teacher's own BatchNorm layers (pooled only),
    ``<teacher>.stats.safetensors``.
    """
    weight = config.synthesis.class_feature_stats if per_class else config.synthesis.feature_stats
    knob = "synthesis.class_feature_stats" if per_class else "synthesis.feature_stats"
    if not weight:
        return {}
    if given is not None:
        reference, source = given, "the class_feature_stats argument" if per_class else "the feature_stats argument"
    else:
        reference, source = ({}, "") if per_class else (batchnorm_reference(teacher_net), "the teacher's BatchNorm layers")
        if not reference:
            path = stats_path(config.teacher_checkpoint)
            if not path.exists():
                why = "" if per_class else f"{type(teacher_net).__name__} has no BatchNorm layers and "
                raise ConfigError(
                    f"{knob} = {weight} needs the teacher's {'per-class ' if per_class else ''}feature statistics on "
                    f"its training data, but {why}{path} does not exist. Record them with `python -m "
                    "datafree.feature_stats --config <recipe>` (train_teacher.py writes them too; from Python pass "
                    f"{knob.split('.')[1]}=datafree.feature_stats.record_feature_stats(teacher, batches"
                    f"{', num_classes=K' if per_class else ''})), or set {knob} = 0."
                )
            try:
                reference, source = load_reference(path, per_class), str(path)
            except ckpt.CheckpointError as err:
                raise ConfigError(f"{knob} = {weight}: {err}") from None
    wanted = config.synthesis.feature_stats_layers
    if wanted:
        missing = [tap for tap in wanted if tap not in reference]
        if missing:
            raise ConfigError(f"synthesis.feature_stats_layers {missing} are not in the statistics from {source}, "
                              f"which has {sorted(reference)}")  # fmt: skip
        reference = {tap: reference[tap] for tap in wanted}
    try:
        shapes = check_network(teacher_net, spec, "teacher", list(reference))
    except ValueError as err:
        raise ConfigError(f"feature statistics from {source}: {err}") from None
    for tap, (mean, var) in reference.items():
        expected = (spec.num_classes, shapes[tap][0]) if per_class else (shapes[tap][0],)
        if tuple(mean.shape) != expected or tuple(var.shape) != expected:
            classes = f" and the data has {spec.num_classes} classes" if per_class else ""
            raise ConfigError(f"feature statistics from {source} have shape {tuple(mean.shape)} for {tap!r}, but the "
                              f"teacher's {tap} has {shapes[tap][0]} channels{classes} (expected {expected}); "
                              "record them again for this teacher")  # fmt: skip
    return reference


def assemble(config: Config, teacher_net: nn.Module, student_net: nn.Module, spec: ImageSpec,
             feature_layer: str | None = None, feature_stats: Reference | None = None,
             class_feature_stats: Reference | None = None):  # fmt: skip
    """Teacher wrapper + student-with-losses + generator from already-built networks (registry or user's own)."""
    check_network(teacher_net, spec, "teacher")
    check_network(student_net, spec, "student")
    student = build_student(config, student_net, teacher_net, spec)
    pooled = feature_stats_reference(config, teacher_net, spec, feature_stats)
    per_class = feature_stats_reference(config, teacher_net, spec, class_feature_stats, per_class=True)
    taps = dict.fromkeys([*student.teacher_taps, *pooled, *per_class])  # ordered, no duplicates
    teacher = Teacher(teacher_net, taps=list(taps), feature_layer=feature_layer)
    teacher.feature_stats, teacher.class_feature_stats = pooled, per_class
    check_network(teacher_net, spec, "teacher", [teacher.penultimate])
    return teacher, student, build_generator(config, spec)
