"""Named starting points for a recipe: the values a recipe (or the Python call) does not set itself.

``preset = "<name>"`` at the top of a recipe (``distill_datafree(..., preset=...)`` in Python) picks the base
onto which the recipe's own tables are laid, key by key; a ``[[synthesis]]`` / ``[[distill]]`` list in the
recipe replaces the preset's list whole. Without a ``preset`` key a recipe starts from ``"default"``.

| preset | what it is | uses beyond the teacher's weights |
|---|---|---|
| ``default`` | the robust recipe measured on the teacher zoo (``runs/bench_teachers.py``): conditional generator (DAFL's up to 32 px; above, the one for half the size, enlarged twice; for colour images each image's colours mixed by its own latent) (every class in every batch, a quarter of each batch made for blends of two neighbouring classes), bounded pixels, the one-hot term at weight 1 for the first half of the steps and 0.3 after, moment prior, feature statistics in the layer's own units, adversarial term (off for the last quarter of the steps), the teacher's penultimate features per class, the spread between a class's images at the feature layers, generator batches of 64, 10 student updates per generator step (9 on fresh batches of 64 images; where a time budget fits fewer than 5,000 of them, the student's learning rate doubled), student batches flipped / shifted by up to 2 px and relabelled by the teacher (bf16 forwards where the hardware computes bf16 natively), KD at temperature 4, the student's BatchNorm statistics recomputed on 20 un-augmented generator batches before it is judged | a BatchNorm teacher's running statistics; recorded pooled / per-class feature statistics (per-class penultimate features and the spread between a class's images among them) when they exist (``teacher.stats.safetensors``, or passed from Python); without either, nothing (the strict case) |
| ``strict`` | ``default`` without the feature-statistics terms (its one-hot term at weight 1 throughout) | nothing: the teacher's weights and the normalization of its inputs |
| ``dafl`` | the paper's objective and generator, with the official code's weights (the dataclass defaults) | nothing |

Every preset also uses the mean/std the teacher's inputs were normalized with (the generator makes images in
that space), which is part of using the teacher at all.
"""

from __future__ import annotations

import copy
from typing import Any

_STATS = {"normalized": True, "optional": True}  # in the layer's units; off (and said so) when nothing to read

_DEFAULT: dict[str, Any] = {
    "student": {"optimizer": "adam", "lr": 0.002, "schedule": "cosine"},
    # a quarter of every batch made for blends of two neighbouring classes (boundary images): measured on the zoo
    # DAFL's generator up to 32 px (where the preset is measured); above, the generator for half the size (DAFL's
    # at 64 px, one that grows by stages from a small seed map beyond: DAFL's projection to (s/4)^2 would not fit
    # at 224 px), enlarged twice: measured on two 64-px pairs (generators/staged.py, docs/changelog.md); for colour
    # images each image's colours mixed by its own latent (tone "auto": on the 64-px pairs 19 -> 63% and 14 -> 20%; on
    # grey teachers it cost points, so not there: generators/tone.py)
    "generator": {"arch": "auto", "output": "pixels", "width": 16, "lr": 0.03, "conditional": True, "tone": "auto"},
    # the generator's batch of 64 (its step costs half), flipped / shifted student batches (relabelled by the
    # teacher, no extra forward on the fresh ones: [[batches]] below), their labels from bf16 forwards where the
    # hardware has bf16 (on BatchNorm-folded copies, runtime.fold_batchnorm): measured on the zoo (docs/changelog.md)
    # one automatic rule (train.adapt, datafree/adapt/): where a time budget fits fewer than 5,000 student updates,
    # the student trains at twice the learning rate (short_run: measured on runs of 80-590 steps); the rules by the
    # networks (no_conv_student, no_norm_student) are not listed: neither gained on a fresh MLP pair
    "train": {"steps": 1500, "batch_size": 64, "student_steps": 10, "adapt": ["short_run"]},
    "runtime": {"label_precision": "auto"},
    # the blends (the generator's quarter above: datafree/callbacks/blend.py), and the student's BatchNorm statistics
    # from 20 un-augmented generator batches before it is judged: its running ones average the flipped / shifted
    # batches it trained on (datafree/callbacks/precise_bn.py)
    "callbacks": [{"name": "blend", "params": {"share": 0.25}}, {"name": "precise_bn", "params": {"batches": 20}}],
    "batches": [{"name": "augment", "params": {"flip": True, "shift": 2}}, {"name": "fresh", "params": {"size": 64}}],
    "synthesis": [
        # full weight for the first half (the generator finds every class), 0.3 after: the statistics terms then
        # spread each class's images as its training images were, and the student anneals on those (measured on
        # the zoo: the ResNet-20's Shirt 36 -> 55, the MobileNet's 34 -> 41; docs/changelog.md)
        {"name": "onehot", "weight": 1.0, "schedule": "step", "milestones": [0.5], "gamma": 0.3},
        {"name": "entropy", "weight": 5.0, "params": {"log": "log10"}},
        {"name": "moment", "weight": 3.0},
        {"name": "feature_stats", "weight": 5.0, "params": dict(_STATS)},
        {"name": "class_feature_stats", "weight": 10.0, "params": dict(_STATS)},
        # off for the last quarter: the student anneals on what the teacher's own objective makes instead of
        # chasing a generator that keeps moving (measured on the zoo: docs/changelog.md)
        {"name": "adversarial", "weight": 1.0, "schedule": "step", "milestones": [0.75], "gamma": 0.0},
        # the teacher's penultimate features per class, spread between images as the class's training images were
        # (recorded; off without a record): measured on the zoo (docs/changelog.md)
        {"name": "class_penultimate_stats", "weight": 5.0, "params": dict(_STATS)},
        # each class's images as different from one another as its training images were, at the layers the feature
        # priors read (recorded; off without a record): above the default without it on every pair of the zoo, tuned
        # and held-out, 3 seeds each (docs/changelog.md, 2026-12-06)
        {"name": "class_image_stats", "weight": 10.0, "params": dict(_STATS)},
    ],
    # the teacher's answers softened to T = 4 (T^2-scaled KL): the student learns how the teacher ranks the other
    # classes, which is what carries it to real images unlike the generator's (measured on the zoo: docs/changelog.md)
    "distill": [{"name": "kd", "weight": 1.0, "params": {"temperature": 4.0}}],
}

# without the statistics terms nothing but the one-hot term holds a conditional image to its class: it keeps weight 1
_STRICT = {**_DEFAULT, "synthesis": [{"name": "onehot", "weight": 1.0} if t["name"] == "onehot" else t
                                     for t in _DEFAULT["synthesis"] if "stats" not in t["name"]]}

PRESETS: dict[str, dict[str, Any]] = {"default": _DEFAULT, "strict": _STRICT, "dafl": {}}


def with_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """The recipe ``raw`` laid over its preset (``raw["preset"]``, default ``"default"``): tables merge by key."""
    name = raw.get("preset", "default")
    if name not in PRESETS:  # datafree.config turns this into a ConfigError
        raise KeyError(f"preset = {name!r} is not one of {sorted(PRESETS)} (datafree/config/presets.py)")
    merged = copy.deepcopy(PRESETS[name])
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    merged["preset"] = name
    return merged
