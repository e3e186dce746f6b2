"""The teacher's per-channel feature statistics on its training data: DeepInversion's image prior.

DeepInversion (Yin et al., CVPR 2020) makes synthetic images look like the training set *to the
teacher* by pulling the batch mean/variance of each BatchNorm layer's input to the running statistics
that layer stored during training. Those statistics are part of a BN teacher, so nothing else is needed.
A teacher without BatchNorm (DAFL's LeNet-5) stores none, so the teacher's owner records the same numbers
once, when training it (``train_teacher.py`` does; ``python -m datafree.cli.feature_stats`` does it for an
existing teacher): a few dozen means and variances per layer, saved beside the teacher as
``<teacher>.stats.safetensors``. The student never sees a training image either way.

A reference is ``{tap name: (mean, var)}`` with one value per channel; tap names follow
:mod:`datafree.nets.features` (``"conv1"`` = that module's output, ``"bn1:input"`` = its input).
A *class* reference holds the same statistics per class, ``(K, C)`` tensors: what the teacher's features
look like on each class's training images (``synthesis.class_feature_stats``; BatchNorm keeps no such
thing, so it is always recorded, by ``train_teacher.py`` or ``python -m datafree.cli.feature_stats``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from datafree.io.checkpoint import CheckpointError, read_metadata, save_tensors
from datafree.nets.features import INPUT_SUFFIX, FeatureTaps, _unwrap, channel_moments, image_moments, penultimate_tap  # noqa: F401 (re-exported)



class Reference(dict):
    """``{tap: (mean, var)}``; ``feature_layer``: the teacher's layer the penultimate features (under
    :data:`PENULTIMATE_TAP`) were read from, so a run reads them at the same layer without being told twice
    ("" where none were recorded, or a file recorded before the layer was kept)."""

    feature_layer: str = ""

OUTPUT_TAP = "logits"  # the teacher's answers (its logits) per class, recorded beside the features under this key
PENULTIMATE_TAP = "penultimate"  # ...and its penultimate features (the input of its last Linear) under this one
# ...and, under ``<tap>@images``, each conv / token layer's per-image averages over positions: their mean and
# spread *between* the images of a class (``synthesis.class_image_stats``), which a layer's moments over images x
# positions mix with the spread within each image
BETWEEN_IMAGES = "@images"


def batchnorm_reference(net: nn.Module) -> Reference:
    """The running mean/var of every BatchNorm (1d, 2d, 3d, synced) that keeps them, as statistics of that layer's
    input (DeepInversion)."""
    layers = [(name, m) for name, m in _unwrap(net).named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return Reference({name + INPUT_SUFFIX: (m.running_mean.detach().clone(), m.running_var.detach().clone())
                      for name, m in layers if m.running_mean is not None})  # fmt: skip


# normalization layers that keep no running statistics: what BatchNorm's running statistics are to a BN
# teacher, the recorded statistics of their inputs are to these (per channel of a map, per feature of tokens)
PER_SAMPLE_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def default_stats_taps(net: nn.Module) -> list[str]:
    """Layers to record: the network's declared ``stats_taps``; else, for a teacher normalized without BatchNorm
    (GroupNorm, LayerNorm: a ViT's blocks, InstanceNorm), the inputs of those layers, where BatchNorm would read
    them; else every conv output (a BatchNorm teacher's convs are its BatchNorms' inputs; LeNet-5 has none)."""
    inner = _unwrap(net)
    declared = getattr(inner, "stats_taps", None)
    if declared:
        return list(declared)
    modules = list(inner.named_modules())
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for _, m in modules)
    norms = [name + INPUT_SUFFIX for name, m in modules if isinstance(m, PER_SAMPLE_NORMS)]
    if norms and not has_batchnorm:
        return norms
    return [name for name, m in modules if isinstance(m, nn.Conv2d)]


def pooled_feature(value: torch.Tensor) -> torch.Tensor:
    """The penultimate feature as one vector per image: a head conv's input map ``(N, C, H, W)`` (or tokens,
    ``(N, C, T)``) averaged over positions, which is what the head's global pooling computes on; a vector as is."""
    return value.flatten(1) if value.dim() <= 2 else value.float().mean(dim=tuple(range(2, value.dim())))


def _penultimate_or_none(net: nn.Module) -> str | None:
    try:
        return penultimate_tap(net)
    except ValueError:
        return None


@torch.no_grad()
def _accumulate(net: nn.Module, batches, taps: list[str], num_classes: int | None, outputs: bool = False,
                feature_layer: str | None = None):  # fmt: skip
    """Per-group float64 sums of x and x^2 over batch and space, and counts; groups = classes or one group;
    ``outputs``: the logits too, under :data:`OUTPUT_TAP`, the penultimate features (``feature_layer``, default
    :func:`~datafree.nets.features.penultimate_tap`) under :data:`PENULTIMATE_TAP`, and each tap's per-image
    averages under ``<tap>`` + :data:`BETWEEN_IMAGES`."""
    penultimate = (feature_layer or _penultimate_or_none(net)) if outputs else None
    hooks = FeatureTaps(net, list(dict.fromkeys([*taps, *([penultimate] if penultimate else [])])))
    was_training = net.training
    net.eval()
    groups = num_classes or 1
    sums: dict[str, torch.Tensor] = {}
    squares: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    try:
        for batch in tqdm(batches, desc="feature statistics", leave=False):
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            if num_classes is not None and not isinstance(batch, (list, tuple)):
                raise ValueError("per-class feature statistics need (images, labels) batches")
            images = images.to(next(net.parameters()).device)
            out = hooks.run(images)
            labels = batch[1] if num_classes is not None else torch.zeros(len(images), dtype=torch.long)
            one_hot = F.one_hot(labels.long().to(images.device), groups).double()  # (N, G), on the net's device
            if outputs and {OUTPUT_TAP, PENULTIMATE_TAP} & set(out.features):
                raise ValueError(f"a layer named {OUTPUT_TAP!r} or {PENULTIMATE_TAP!r} clashes with the recorded outputs' "
                                 "keys; record with outputs=False")  # fmt: skip
            taps_and_outputs = {tap: out.features[tap] for tap in taps}
            if outputs:
                taps_and_outputs[OUTPUT_TAP] = out.logits
            if penultimate:
                taps_and_outputs[PENULTIMATE_TAP] = pooled_feature(out.features[penultimate])
            for tap, value in taps_and_outputs.items():
                positions = value[0, 0].numel()  # H * W values per channel per image
                # each image's spatial means in float32 (the features' own precision, pairwise-summed), then
                # float64 for the sums over the dataset (not a float64 copy of every full map)
                rows = image_moments(value)
                first, second = (row.double() * positions for row in rows)
                sums[tap] = sums.get(tap, 0) + one_hot.T @ first
                squares[tap] = squares.get(tap, 0) + one_hot.T @ second
                counts[tap] = counts.get(tap, 0) + one_hot.sum(dim=0) * positions
                if outputs and tap in taps and value.dim() > 2:  # each image's averages: one value per image
                    between, means = tap + BETWEEN_IMAGES, rows[0].double()
                    sums[between] = sums.get(between, 0) + one_hot.T @ means
                    squares[between] = squares.get(between, 0) + one_hot.T @ (means * means)
                    counts[between] = counts.get(between, 0) + one_hot.sum(dim=0)
    finally:
        hooks.remove()
        net.train(was_training)
    if not sums:
        raise ValueError("record_feature_stats got no images")
    return sums, squares, counts, penultimate or ""


def _finish(sums, squares, counts, feature_layer: str, per_class: bool) -> Reference:
    """Mean/var from the sums; pooled over classes unless ``per_class`` (an empty class gets the pooled values)."""
    reference = Reference()
    reference.feature_layer = feature_layer
    for tap in sums:
        s, q, n = sums[tap], squares[tap], counts[tap][:, None]
        pooled_mean = s.sum(0) / n.sum()
        pooled_var = q.sum(0) / n.sum() - pooled_mean**2
        if per_class:
            mean = torch.where(n > 0, s / n.clamp_min(1), pooled_mean)
            var = torch.where(n > 0, q / n.clamp_min(1) - mean**2, pooled_var)
        else:
            mean, var = pooled_mean, pooled_var
        reference[tap] = (mean.float(), var.clamp_min(0).float())
    return reference


def record_feature_stats(net: nn.Module, batches, taps: list[str] | None = None,
                         num_classes: int | None = None) -> Reference:  # fmt: skip
    """Per-channel mean/var of ``taps`` over all images of ``batches`` (an iterable of image tensors or
    (images, labels) pairs), accumulated in float64 so a 60K-image pass does not lose precision.

    With ``num_classes`` the batches must carry labels and the result is per class: ``(K, C)`` tensors.
    """
    sums = _accumulate(net, batches, taps or default_stats_taps(net), num_classes)
    return _finish(*sums, per_class=num_classes is not None)


def record_teacher_stats(net: nn.Module, batches, num_classes: int, taps: list[str] | None = None,
                         outputs: bool = True, feature_layer: str | None = None) -> tuple[Reference, Reference]:  # fmt: skip
    """(pooled, per-class) statistics from ONE pass over labelled training batches: what gets saved. With
    ``outputs`` both also hold the teacher's logits under :data:`OUTPUT_TAP` (per class: what the teacher answers
    on each class's images, ``synthesis.class_output_stats``) and its penultimate features under
    :data:`PENULTIMATE_TAP` (``synthesis.class_penultimate_stats``), and each layer's per-image averages under
    ``<tap>@images`` (:data:`BETWEEN_IMAGES`; ``synthesis.class_image_stats``); the feature terms ignore them all.

    ``feature_layer`` is the tap the penultimate features are read at (default: the model's declared one, else the
    input of its last Linear or head conv); both references keep it as ``.feature_layer`` and the saved file in its
    metadata, and ``distill_datafree(..., class_feature_stats=per_class)`` reads it from there: it is given once."""
    sums = _accumulate(net, batches, taps or default_stats_taps(net), num_classes, outputs, feature_layer)
    return _finish(*sums, per_class=False), _finish(*sums, per_class=True)


def stats_path(teacher_checkpoint: str | Path) -> Path:
    """Where a teacher's recorded statistics live: beside it, ``teacher.safetensors`` -> ``teacher.stats.safetensors``."""
    path = Path(teacher_checkpoint)
    return path.with_name(path.name.removesuffix(".safetensors") + ".stats.safetensors")


def recorded_stats_path(checkpoint: str | Path | None, stats: str | None = "") -> Path | None:
    """Where a teacher's recorded statistics are read from (``[teacher] stats``): ``""`` beside ``checkpoint``, a
    path, or ``"none"``: None, nothing recorded is read (the weights-only case; a BatchNorm teacher's running
    statistics are part of its weights and still read). None too without a checkpoint (a module from Python)."""
    if stats == "none":
        return None
    if stats:
        return Path(stats)
    return stats_path(checkpoint) if checkpoint else None


def save_reference(reference: Reference, path: str | Path, class_reference: Reference | None = None) -> None:
    """One safetensors file: ``<tap>/mean``, ``<tap>/var`` and, if given, ``<tap>/class_mean``, ``<tap>/class_var``."""
    tensors = {}
    for tap, (mean, var) in reference.items():
        tensors[f"{tap}/mean"], tensors[f"{tap}/var"] = mean, var
    for tap, (mean, var) in (class_reference or {}).items():
        tensors[f"{tap}/class_mean"], tensors[f"{tap}/class_var"] = mean, var
    layer = getattr(class_reference, "feature_layer", "") or getattr(reference, "feature_layer", "")
    save_tensors(tensors, Path(path), metadata={"what": "per-channel feature statistics of the teacher, training data",
                                                **({"feature_layer": layer} if layer else {})})  # fmt: skip


def load_reference(path: str | Path, per_class: bool = False) -> Reference:
    """Read a statistics file (safetensors: tensors only, nothing is unpickled); the per-class part if asked."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"feature statistics {path} do not exist")
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors' own errors for a truncated or foreign file
        raise CheckpointError(f"feature statistics {path} are unreadable or corrupt ({err}); record them again with "
                              "`python -m datafree.cli.feature_stats --config <recipe>`") from None
    prefix = "class_" if per_class else ""
    taps = sorted({key.rsplit("/", 1)[0] for key in tensors})
    if per_class and not any(key.endswith("/class_mean") for key in tensors):
        raise CheckpointError(f"{path} has no per-class statistics (recorded before they existed); record them again "
                              "with `python -m datafree.cli.feature_stats --config <recipe>`")  # fmt: skip
    try:
        reference = Reference({tap: (tensors[f"{tap}/{prefix}mean"], tensors[f"{tap}/{prefix}var"]) for tap in taps})
        reference.feature_layer = read_metadata(path).get("feature_layer", "")
        return reference
    except KeyError as err:
        raise CheckpointError(f"{path} is not a feature statistics file (missing {err}); record it again") from None


def _keys(path: str | Path) -> list[str]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return list(fh.keys())
    except FileNotFoundError:
        raise CheckpointError(f"feature statistics {path} do not exist") from None
    except Exception as err:  # safetensors' own error for a truncated or foreign file ("header too large")
        raise CheckpointError(f"feature statistics {path} are unreadable or corrupt ({err}); record them again with "
                              "`datafree stats --config <recipe>`") from None


def has_class_stats(path: str | Path) -> bool:
    """Whether a statistics file has the per-class part (files written before it existed do not)."""
    return any(key.endswith("/class_mean") for key in _keys(path))


def recorded_keys(path: str | Path) -> set[str]:
    """The keys a statistics file holds (``<tap>/mean``, ``<tap>/class_var``, ...), read from its header only."""
    return set(_keys(path))


def has_outputs(path: str | Path, key: str = OUTPUT_TAP) -> bool:
    """Whether a statistics file has the teacher's per-class outputs (``key``: its logits or its penultimate
    features; files written before them do not)."""
    return f"{key}/class_mean" in _keys(path)
