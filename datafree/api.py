"""Distill YOUR teacher into YOUR student without any data and without editing the library.

    from datafree import distill_datafree
    results = distill_datafree(my_teacher, my_student, image_size=32, channels=3, num_classes=10,
                               eval_set=my_labelled_test_set,              # optional, real data for accuracy only
                               train={"steps": 2000, "output_dir": "outputs/mine"})

Any ``nn.Module`` that maps normalized images to logits works. The activation loss needs the teacher's
penultimate feature: by default the input of its last ``nn.Linear`` (a forward hook, no change to your
model); pass ``feature_layer="<module path>"`` (or ``"<path>:input"``) to choose another layer.
The optional DeepInversion prior (``synthesis={"feature_stats": 1.0}``) reads a BatchNorm teacher's
running statistics by itself; for a teacher without BatchNorm pass
``feature_stats=datafree.feature_stats.record_feature_stats(teacher, batches_you_trained_it_on)``.
The per-class prior (``synthesis={"class_feature_stats": 1.0}``) needs the same per class, from labelled
batches: ``class_feature_stats=record_feature_stats(teacher, labelled_batches, num_classes=K)``.
"""

from __future__ import annotations

from dataclasses import fields, replace

from torch import nn
from torch.utils.data import Dataset

from datafree.config import Config, ConfigError, LossConfig, validate
from datafree.pipeline import distill
from datafree.trainer import ImageSpec


def distill_datafree(teacher: nn.Module, student: nn.Module, *, image_size: int, channels: int, num_classes: int,
                     mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                     eval_set: Dataset | None = None, feature_layer: str | None = None,
                     config: Config | None = None, losses: list[dict] | None = None, resume: bool = False,
                     feature_stats: dict | None = None, class_feature_stats: dict | None = None,
                     **sections: dict) -> dict:  # fmt: skip
    """Run DAFL with the given networks; ``sections`` override recipe tables, e.g. ``generator={"width": 64}``.

    ``mean``/``std`` are the normalization the teacher was trained with (only used to display samples).
    ``losses`` is the student objective, e.g. ``[{"name": "kd"}, {"name": "at", "weight": 1.0,
    "params": {"student_layers": [...], "teacher_layers": [...]}}]``. Returns the results dict
    (also written to ``<train.output_dir>/results.json`` with the report).
    """
    config = replace(config or Config(name="custom"))
    for section, values in sections.items():
        if section not in {f.name for f in fields(Config)} or section in {"name", "distill"}:
            raise ConfigError(f"unknown recipe section {section!r}; use data, teacher, student, generator, synthesis, train")
        current = getattr(config, section)
        allowed = {f.name for f in fields(current)}
        unknown = set(values) - allowed
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} for [{section}]; allowed: {sorted(allowed)}")
        setattr(config, section, replace(current, **values))
    if losses is not None:
        config.distill = [LossConfig(**loss) for loss in losses]
    validate(config)
    spec = ImageSpec(channels, image_size, num_classes, tuple(mean or (0.5,) * channels), tuple(std or (0.5,) * channels))
    return distill(config, teacher, student, spec, eval_set, feature_layer=feature_layer, resume=resume,
                   feature_stats=feature_stats, class_feature_stats=class_feature_stats)
