"""Distill YOUR teacher into YOUR student without any data and without editing the library.

    from datafree import distill_datafree
    results = distill_datafree(my_teacher, my_student, image_size=32, channels=3, num_classes=10,
                               eval_set=my_labelled_test_set,              # optional, real data for accuracy only
                               train={"steps": 2000, "output_dir": "outputs/mine"})

Any ``nn.Module`` that maps normalized images to logits works: its forward may return a tensor, an object or dict
with a ``logits`` tensor (a Hugging Face classifier's output), or a tuple whose first element is the logits
(:func:`datafree.nets.features.logits_of`); anything else is refused, naming what it returned. The activation loss needs the teacher's
penultimate feature: by default the input of its last ``nn.Linear``, or of its head conv where it has none (a
forward hook, removed afterwards; the run prints which); pass ``feature_layer="<module path>"`` (or
``"<path>:input"``) to choose another layer, or give it to ``record_teacher_stats``, whose record carries it here.
The call starts from the robust preset (``preset="default"``; ``"dafl"`` is the paper, ``"strict"`` the
teacher's weights only). Its DeepInversion prior reads a BatchNorm teacher's running statistics by itself; for
a teacher without BatchNorm pass ``feature_stats=datafree.nets.feature_stats.record_feature_stats(teacher,
batches_you_trained_it_on)``, and for the per-class priors ``class_feature_stats=record_teacher_stats(teacher,
labelled_batches, num_classes=K)[1]`` (the layers', the penultimate features' and the logits' statistics per
class); what was read is printed and written to ``results.json`` ("uses").
The generator's objective can be replaced: ``synthesis=[{"name": "onehot", "weight": 1.0}, ...]``.
After the call the teacher has no hooks left and its ``requires_grad`` flags and train mode are as they were;
both networks are left in channels_last memory format when ``runtime.channels_last`` is on (the default).
"""

from __future__ import annotations

import time
from dataclasses import fields, replace

from torch import nn
from torch.utils.data import Dataset

from datafree.config import (SECTIONS, Config, ConfigError, PieceConfig, TermConfig, _coerce, from_dict,
                             set_synthesis_value, validate)  # fmt: skip
from datafree.config.spellings import (LEGACY_BATCH_KEYS, LEGACY_CALLBACK_KEYS, moved_runtime_keys, translate_batch_keys,
                                translate_callback_keys)  # fmt: skip
from datafree.pipeline import distill
from datafree.nets.spec import ImageSpec


def distill_datafree(teacher: nn.Module, student: nn.Module, /, *, image_size: int, channels: int, num_classes: int,
                     mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                     dataset: str | None = None, class_names: list[str] | None = None,
                     eval_set: Dataset | None = None, feature_layer: str | None = None,
                     preset: str = "default", config: Config | None = None, losses: list[dict] | None = None,
                     synthesis: list[dict] | dict[str, float] | None = None, resume: bool = False,
                     feature_stats: dict | None = None, class_feature_stats: dict | None = None,
                     batches: list[dict] | None = None, callbacks: list[dict] | None = None,
                     **sections: dict) -> dict:  # fmt: skip
    """Run data-free distillation with the given networks; ``sections`` override recipe tables by keyword,
    e.g. ``generator={"width": 64}``, ``train={"steps": 500}``, ``student={"lr": 1e-3}``.

    ``preset`` is the recipe the call starts from (ignored when ``config`` is given): ``"default"`` the robust
    recipe (a BatchNorm teacher's running statistics are read; ``feature_stats=`` / ``class_feature_stats=``
    when passed; without either it runs on the weights alone and says so), ``"strict"`` never reads statistics,
    ``"dafl"`` the paper's objective and generator (datafree/config/presets.py has the table).
    ``mean``/``std`` are the normalization the teacher was trained with, required (or ``dataset=`` a registered
    dataset's name, whose normalization and class names are used): the generator makes images in the teacher's
    normalized space, and with ``generator={"output": "pixels"}`` they decide which values are valid pixels, so a
    wrong guess teaches the generator images the teacher never saw. ``image_size`` must be a multiple of 4 (the
    DAFL generator upsamples twice from image_size / 4). ``class_names`` label the report. ``losses`` is the
    student objective (default: the preset's; KD at temperature 4 in ``default``, at 1 in ``dafl``),
    e.g. ``[{"name": "kd"}, {"name": "at", "weight": 1.0, "params": {...}}]``; ``synthesis`` the generator's: a
    list of terms (replaces the recipe's), or ``{term: weight}`` added to them (``{"feature_stats": 1.0}``).
    ``batches`` / ``callbacks`` replace the preset's student-batch pieces / loop callbacks (docs/recipes.md), e.g.
    ``callbacks=[{"name": "ema", "params": {"decay": 0.999}}]``; their old ``train=`` / ``generator=`` keys
    (``train={"ema_decay": 0.999}``) are translated onto them as in a recipe.
    The student is trained in place; in ``default`` its BatchNorm running statistics end as those of the final
    generator's un-augmented images (the ``precise_bn`` callback: datafree/callbacks/precise_bn.py).
    Returns the results dict (accuracies as fractions; also written to ``<train.output_dir>/results.json``).
    Without ``train={"output_dir": ...}`` the run gets a fresh folder ``outputs/custom-<date>-<time>``; a folder
    holding an earlier run's checkpoints is refused unless ``train={"overwrite": True}`` (or ``resume=True``).
    """
    given_dir = config is not None or "output_dir" in sections.get("train", {})
    config = replace(config or from_dict({"name": "custom", "preset": preset}))
    if not given_dir:  # never an earlier run's folder (the recipes' default is the demo's outputs/fmnist)
        config.train = replace(config.train, output_dir=f"outputs/{config.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    sections = moved_runtime_keys(sections, where="train=")  # train={"mixed_precision": ...}: the old spelling
    for section, values in sections.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown recipe section {section!r}; use {', '.join(SECTIONS)} (and losses=, synthesis=)")
        current = getattr(config, section)
        values = dict(values)
        old_pieces = {k: values.pop(k) for k in list(values) if section == "train" and k in LEGACY_BATCH_KEYS}
        config.batches = translate_batch_keys(config.batches, old_pieces) if old_pieces else config.batches
        old_callbacks = {(section, k): values.pop(k) for k in list(values) if (section, k) in LEGACY_CALLBACK_KEYS}
        config.callbacks = translate_callback_keys(config.callbacks, old_callbacks) if old_callbacks else config.callbacks
        allowed = {f.name for f in fields(current)}
        unknown = set(values) - allowed
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} for [{section}]; allowed: {sorted(allowed)}")
        setattr(config, section, _coerce({**current.__dict__, **values}, type(current), section))
    if losses is not None:
        config.distill = _coerce(losses, list[TermConfig], "losses")
    if batches is not None:
        config.batches = _coerce(batches, list[PieceConfig], "batches")
    if callbacks is not None:
        config.callbacks = _coerce(callbacks, list[PieceConfig], "callbacks")
    if isinstance(synthesis, dict):  # {term: weight} on top of the recipe's terms, e.g. {"feature_stats": 1.0}
        config.synthesis = [replace(t) for t in config.synthesis]
        for name, weight in synthesis.items():
            set_synthesis_value(config, name, weight)
    elif synthesis is not None:
        config.synthesis = _coerce(synthesis, list[TermConfig], "synthesis")
    validate(config)
    spec = _spec(image_size, channels, num_classes, mean, std, dataset, class_names)
    # what config.json records: these networks are the user's, not registry architectures
    config.teacher = replace(config.teacher, arch=f"user module ({type(teacher).__name__})", checkpoint="")
    config.student = replace(config.student, arch=f"user module ({type(student).__name__})")
    feature_layer = _recorded_layer(feature_layer, feature_stats, class_feature_stats)
    references = {"feature_stats": feature_stats, "class_feature_stats": class_feature_stats}
    return distill(config, teacher, student, spec, eval_set, feature_layer=feature_layer, resume=resume,
                   references=references)


def _recorded_layer(feature_layer: str | None, *references: dict | None) -> str | None:
    """``feature_layer`` as given, else the layer the passed statistics' penultimate features were recorded at
    (``record_teacher_stats(..., feature_layer=...)`` keeps it): the layer is named once, where it is recorded."""
    recorded = {layer for ref in references if (layer := getattr(ref, "feature_layer", ""))}
    if len(recorded) > 1:
        raise ConfigError(f"feature_stats= and class_feature_stats= were recorded at different penultimate layers "
                          f"{sorted(recorded)}: record both in one record_teacher_stats call")  # fmt: skip
    if feature_layer and recorded and feature_layer not in recorded:
        raise ConfigError(f"feature_layer={feature_layer!r}, but the statistics passed were recorded with the "
                          f"penultimate features at {recorded.pop()!r}: give record_teacher_stats the same "
                          "feature_layer (or leave it out here: it is read from the record)")  # fmt: skip
    return feature_layer or (recorded.pop() if recorded else None)


def _spec(image_size: int, channels: int, num_classes: int, mean, std, dataset: str | None, class_names) -> ImageSpec:
    """The images' description, checked: a clear error for what would otherwise fail deep inside a forward."""
    if image_size % 4:
        raise ConfigError(f"image_size must be a multiple of 4 (the generator upsamples twice from image_size / 4), "
                          f"got {image_size}; resize your images, e.g. to {image_size + 4 - image_size % 4}")  # fmt: skip
    if dataset is not None:
        from datafree.data import dataset_info

        info = dataset_info(dataset)
        mean, std = mean or info.mean, std or info.std
        class_names = class_names or list(info.class_names)
    if mean is None or std is None:
        raise ConfigError("pass mean= and std= (the normalization your teacher was trained with), or dataset=<a "
                          "registered dataset name>: the generator makes images in the teacher's normalized space")  # fmt: skip
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ConfigError(f"mean/std need 1 or {channels} values (one per channel), got {len(mean)} and {len(std)}")
    if class_names is not None and len(class_names) != num_classes:
        raise ConfigError(f"class_names has {len(class_names)} names but num_classes is {num_classes}")
    return ImageSpec(channels, image_size, num_classes, mean * (channels // len(mean)), std * (channels // len(std)),
                     tuple(class_names or ()))
