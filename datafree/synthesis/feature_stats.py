"""DeepInversion's feature prior, pooled (``feature_stats``) and per class (``class_feature_stats``).

Each term loads its own reference in ``setup``, for every network of the teacher source (features of a
source with several members are namespaced, ``"<member>/<tap>"``), from, in order: what the Python call
handed over (``distill_datafree(..., feature_stats=...)``), the network's BatchNorm running statistics
(pooled only: BatchNorm keeps no per-class numbers), the file recorded beside its checkpoint
(``<teacher>.stats.safetensors``, written by train_teacher.py or ``python -m datafree.cli.feature_stats``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from datafree.io.checkpoint import CheckpointError
from datafree.config import ConfigError
from datafree.nets.feature_stats import (BETWEEN_IMAGES, OUTPUT_TAP, PENULTIMATE_TAP, Reference, batchnorm_reference,
                                    load_reference, recorded_stats_path)  # fmt: skip
from datafree.nets.features import image_moments, penultimate_tap, pooled_moments
from datafree.synthesis.base import SynthBatch, SynthesisTerm, TermContext, register_synthesis_term

Moments = dict[str, tuple[torch.Tensor, torch.Tensor]]  # tap -> per-image spatial means of x and x^2, (N, C) each


def _image_rows(features: dict[str, torch.Tensor], reference: Reference, moments: Moments | None) -> Moments:
    """The rows every prior below starts from: handed over (a SynthBatch computes them once for all its terms), or
    computed here from the features."""
    return moments if moments is not None else {tap: image_moments(features[tap]) for tap in reference}


def feature_stats_loss(features: dict[str, torch.Tensor], reference: Reference,
                       moments: Moments | None = None) -> torch.Tensor:  # fmt: skip
    """DeepInversion's feature prior: sum over layers of ||mu(x) - mu_ref||_2 + ||var(x) - var_ref||_2.

    mu/var are per-channel batch statistics of the teacher's features at each reference layer (over batch
    and space, biased variance); mu_ref/var_ref what the teacher saw on its training data
    (:mod:`datafree.nets.feature_stats`). Matching them makes the batch look like the training set to the teacher.
    """
    moments, total = _image_rows(features, reference, moments), None
    for tap, (ref_mean, ref_var) in reference.items():
        mean, var = pooled_moments(*moments[tap])
        term = torch.linalg.vector_norm(mean - ref_mean) + torch.linalg.vector_norm(var - ref_var)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("feature_stats_loss needs at least one reference layer")
    return total


def class_feature_stats_loss(features: dict[str, torch.Tensor], reference: Reference, labels: torch.Tensor,
                             min_count: int = 2, moments: Moments | None = None) -> torch.Tensor:  # fmt: skip
    """The feature prior per class: images labelled k must have the statistics of class k's training images.

    For each layer, sum over classes k of (n_k / n) * (||mu_k(x) - mu_ref[k]||_2 + ||var_k(x) - var_ref[k]||_2),
    mu_k/var_k over the n_k images labelled k (and space); classes with fewer than ``min_count`` images in
    the batch are skipped (n counts the rest). The pooled prior only asks that the MIXTURE look right; a
    generator can meet it with too few pullovers and too many shirt-like ones, this one cannot.
    """
    moments, total = _image_rows(features, reference, moments), None
    for tap, (ref_mean, ref_var) in reference.items():
        mean, var, images = _class_moments(*moments[tap], F.one_hot(labels, ref_mean.shape[0]))
        per_class = torch.linalg.vector_norm(mean - ref_mean, dim=1) + torch.linalg.vector_norm(var - ref_var, dim=1)
        weight = torch.where(images >= min_count, images, torch.zeros_like(images))
        term = (weight * per_class).sum() / weight.sum().clamp_min(1)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("class_feature_stats_loss needs at least one reference layer")
    return total


def relative_gap(mean: torch.Tensor, var: torch.Tensor, ref_mean: torch.Tensor, ref_var: torch.Tensor,
                 scale_var: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """rms_c((mu - mu_ref) / sigma_c) + rms_c((sigma - sigma_ref) / sigma_c) over the last (channel) dimension.

    sigma_c^2 = scale_var_c + eps * mean_c(scale_var): the reference's spread per channel, floored relative to
    the layer so a dead channel cannot dominate. Every piece is a ratio of the layer's own units and an rms
    over its channels, so the value is unchanged when a layer's features are scaled (a conv's weights times s,
    its BatchNorm's statistics times s and s^2) or its channel count changes.
    """
    scale = scale_var + eps * scale_var.mean(dim=-1, keepdim=True) + 1e-12
    mean_gap = ((mean - ref_mean).pow(2) / scale).mean(dim=-1).sqrt()
    std_gap = ((var.clamp_min(0).sqrt() - ref_var.clamp_min(0).sqrt()).pow(2) / scale).mean(dim=-1).sqrt()
    return mean_gap + std_gap


def relative_feature_stats_loss(features: dict[str, torch.Tensor], reference: Reference,
                                moments: Moments | None = None) -> torch.Tensor:  # fmt: skip
    """The pooled prior in the layer's own units, averaged over layers (``normalized = true``):

        L = (1/|layers|) sum_l [ rms_c((mu_lc - mu_ref_lc) / sigma_lc) + rms_c((sigma(x)_lc - sigma_ref_lc) / sigma_lc) ]

    with sigma_lc the reference's standard deviation (:func:`relative_gap`). DeepInversion's sum of L2 norms
    grows with the number of layers, the channels and the feature magnitude (a ResNet-20's 19 BatchNorm
    layers gave ~4x LeNet-5's value and drowned the one-hot term); this one is ~1 for a batch one standard
    deviation off in every channel, whatever the teacher.
    """
    moments, gaps = _image_rows(features, reference, moments), []
    for tap, (ref_mean, ref_var) in reference.items():
        mean, var = pooled_moments(*moments[tap])
        gaps.append(relative_gap(mean, var, ref_mean, ref_var, ref_var))
    if not gaps:
        raise ValueError("feature_stats_loss needs at least one reference layer")
    return torch.stack(gaps).mean()


def relative_class_feature_stats_loss(features: dict[str, torch.Tensor], reference: Reference, labels: torch.Tensor,
                                      min_count: int = 2, moments: Moments | None = None) -> torch.Tensor:  # fmt: skip
    """The per-class prior in the layer's own units (``normalized = true``), averaged over layers:

        L = (1/|layers|) sum_l sum_k (n_k / n) * relative_gap(mu_lk(x), var_lk(x), mu_ref_lk, var_ref_lk, var_pool_l)

    var_pool_l = mean_k var_ref_lk + var_k mu_ref_lk, the pooled variance of the reference's classes: one
    scale per channel for every class, so a channel that is silent on one class does not blow up that class's
    gap. Classes with fewer than ``min_count`` images in the batch are skipped, as in the unnormalized form.
    """
    moments, gaps = _image_rows(features, reference, moments), []
    for tap, (ref_mean, ref_var) in reference.items():
        mean, var, images = _class_moments(*moments[tap], F.one_hot(labels, ref_mean.shape[0]))
        pooled = ref_var.mean(dim=0) + ref_mean.var(dim=0, unbiased=False)
        per_class = relative_gap(mean, var, ref_mean, ref_var, pooled.expand_as(ref_var))
        weight = torch.where(images >= min_count, images, torch.zeros_like(images))
        gaps.append((weight * per_class).sum() / weight.sum().clamp_min(1))
    if not gaps:
        raise ValueError("class_feature_stats_loss needs at least one reference layer")
    return torch.stack(gaps).mean()


def _class_moments(first: torch.Tensor, second: torch.Tensor,
                   one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-class (K, C) mean and biased variance over the images of each class and space; image counts (K,).

    From each image's spatial means of x and x^2 (:func:`~datafree.nets.features.image_moments`), a (K, N) @ (N, C)
    product: the same moments as one sum over (images of class k) x space, as every image has the same H x W;
    2-3x faster forward + backward on channels_last features than the einsum over the full tensor it replaced
    (floating-point sums reordered)."""
    one_hot = one_hot.to(first.dtype)
    images = one_hot.sum(dim=0)
    count = images.clamp_min(1)[:, None]
    mean = one_hot.t() @ first / count
    var = (one_hot.t() @ second / count - mean * mean).clamp_min(0)
    return mean, var, images


class NoReference(ConfigError):
    """No statistics anywhere for a network (an ``optional`` term turns itself off on this)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _member_reference(name: str, member, given: Reference | None, per_class: bool,
                      what: str = "feature statistics", given_as: str = "") -> tuple[Reference, str]:  # fmt: skip
    """One network's reference and where it came from (for messages and the report's "uses" line); ``given_as``:
    the Python call's argument that handed it over, where it is not the term's own name."""
    kind = f"per-class {what}" if per_class else what
    if given is not None:
        return given, f"{kind} passed as {given_as or name}="
    if not per_class:
        reference = batchnorm_reference(member.net)
        if reference:
            return reference, "the teacher's BatchNorm running statistics"
    path = recorded_stats_path(member.checkpoint, member.stats)
    if path is None or not path.exists():
        why = "" if per_class else f"{type(member.net).__name__} has no BatchNorm layers and "
        argument = "class_feature_stats" if per_class else "feature_stats"
        record = ("datafree.nets.feature_stats.record_teacher_stats(teacher, labelled_batches, num_classes=K) records them "
                  f"all; pass its {'per-class (second)' if per_class else 'pooled (first)'} part as {argument}=")  # fmt: skip
        if member.stats == "none":  # the recipe asked for the weights-only case
            where, fix = '[teacher] stats = "none" reads nothing recorded', 'set [teacher] stats to "" or a file, or drop the term'
        elif path is None:  # the Python call: no recipe, no checkpoint file
            where = f"nothing was passed as {argument}= to distill_datafree"
            fix = f"{record}, or drop the term"
        else:
            where = f"{path} does not exist"
            fix = (f"record them with `python -m datafree.cli.feature_stats --config <recipe>` (train_teacher.py writes "
                   f"them too; from Python, {record}), or drop the term")  # fmt: skip
        raise NoReference(f"[[synthesis]] {name} needs the teacher's {kind} on its training data, but {why}{where}: "
                          f"{fix}.", reason=f"{why}{where}")
    try:
        return load_reference(path, per_class), f"recorded {kind} ({path})"
    except CheckpointError as err:
        raise ConfigError(f"[[synthesis]] {name}: {err}") from None


class _StatsTerm(SynthesisTerm):
    per_class = False
    recorded_key: str | None = None  # the teacher's recorded logits (OUTPUT_TAP) or penultimate features
    # (PENULTIMATE_TAP) instead of its layers' features
    what = "feature statistics"  # what the term reads, in its messages and the report's "uses" line

    def __init__(self, layers: list[str] | None = None, normalized: bool = False, optional: bool = False):
        super().__init__()
        self.layers, self.normalized, self.optional = list(layers or []), normalized, optional
        self.reference: Reference = {}

    @property
    def teacher_taps(self) -> tuple[str, ...]:
        return tuple(self.reference)

    @classmethod
    def recorded_in(cls, keys: set[str]) -> bool:
        """The pooled or per-class part of the file (``<tap>/mean`` or ``<tap>/class_mean``), under the term's key."""
        part = "/class_mean" if cls.per_class else "/mean"
        if cls.recorded_key == BETWEEN_IMAGES:
            return any(key.endswith(BETWEEN_IMAGES + part) for key in keys)
        if cls.recorded_key:
            return cls.recorded_key + part in keys
        return any(key.endswith(part) for key in keys)

    def _rows(self, batch: SynthBatch) -> Moments:
        return {tap: batch.image_moments(tap) for tap in self.reference}

    def setup(self, context: TermContext) -> None:
        name, spec = self.registry_name, context.spec
        if self.recorded_key:  # the logits / penultimate features come inside the Python call's class_feature_stats=
            context = _given_with_class_stats(context, name)
        members = context.teacher.members()
        given = context.given.get(name)
        sources = []
        for member in members:
            try:
                reference, source = _member_reference(name, member, given if len(members) == 1 else None,
                                                      self.per_class, self.what, context.given_as.get(name, ""))  # fmt: skip
            except NoReference as err:
                if not self.optional:
                    raise
                self._off(name, member.prefix + err.reason)
                return
            recorded_layer = getattr(reference, "feature_layer", "")
            reference = _of_kind(reference, self.recorded_key)
            if self.recorded_key == PENULTIMATE_TAP and reference:  # read where the run reads the teacher's
                layer = _penultimate_of(context.teacher, member)
                if recorded_layer and recorded_layer != layer:
                    raise ConfigError(f"[[synthesis]] {name}: the penultimate features from {source} were recorded at "
                                      f"{recorded_layer!r} but this run reads the teacher's penultimate feature at "
                                      f"{layer!r}: pass feature_layer={recorded_layer!r} (or record them again at "
                                      f"{layer!r})")  # fmt: skip
                reference = {layer: stats for stats in reference.values()}
            if not reference:  # a file recorded before the outputs were, or only the outputs
                self._off(name, f"the statistics read hold no recorded {self.what} (a file recorded before they were, "
                                "or record_feature_stats' output: datafree.nets.feature_stats.record_teacher_stats records "
                                "them all)")  # fmt: skip
                return
            sources.append(member.prefix + source if member.prefix else source)
            if self.layers:
                missing = [tap for tap in self.layers if tap not in reference]
                if missing:
                    raise ConfigError(f"[[synthesis]] {name}: layers {missing} are not in the statistics from {source}, "
                                      f"which has {sorted(reference)}")  # fmt: skip
                reference = {tap: reference[tap] for tap in self.layers}
            taps = {member.prefix + tap: stats for tap, stats in reference.items()}
            try:
                shapes = ({tap: (spec.num_classes,) for tap in taps} if self.recorded_key == OUTPUT_TAP
                          else context.teacher.feature_shapes(list(taps)))  # fmt: skip
            except ValueError as err:
                raise ConfigError(f"feature statistics from {source}: {err}") from None
            for tap, (mean, var) in taps.items():
                expected = (spec.num_classes, shapes[tap][0]) if self.per_class else (shapes[tap][0],)
                if tuple(mean.shape) != expected or tuple(var.shape) != expected:
                    classes = f" and the data has {spec.num_classes} classes" if self.per_class else ""
                    raise ConfigError(f"feature statistics from {source} have shape {tuple(mean.shape)} for {tap!r}, "
                                      f"but the teacher's {tap} has {shapes[tap][0]} channels{classes} (expected "
                                      f"{expected}); record them again for this teacher")  # fmt: skip
                self.reference[tap] = (mean.to(context.device), var.to(context.device))
        self.uses = "; ".join(dict.fromkeys(sources))

    def _off(self, name: str, reason: str) -> None:
        """Nothing to read: an optional term leaves the objective (and says why), a required one is an error."""
        if not self.optional:
            raise ConfigError(f"[[synthesis]] {name}: {reason}; record them again with `python -m "
                              "datafree.cli.feature_stats --config <recipe>`, or drop the term")  # fmt: skip
        self.available, self.reference, self.uses = False, {}, ""
        self.note = f"{name} off (optional): {reason}"


def _penultimate_of(source, member) -> str:
    """The member's penultimate tap as the run reads it (the call's or recipe's feature_layer, else the network's
    default), without the member's namespace."""
    for m, tap in zip(source.members(), source.penultimate_taps):
        if m is member:
            return tap[len(m.prefix):]
    return penultimate_tap(member.net)


def _given_with_class_stats(context: TermContext, name: str) -> TermContext:
    """The Python call's ``class_feature_stats=`` (record_teacher_stats' per-class part) holds the logits and the
    penultimate features too: the context with it handed to term ``name`` as well, where nothing else was."""
    given = context.given
    if given.get(name) is None and given.get("class_feature_stats") is not None:
        return dataclasses.replace(context, given={**given, name: given["class_feature_stats"]},
                                   given_as={**context.given_as, name: "class_feature_stats"})  # fmt: skip
    return context


def _of_kind(reference: Reference, key: str | None) -> Reference:
    """A recorded file holds the features' statistics and (since the outputs were recorded) the logits' under
    ``OUTPUT_TAP``, the penultimate features' under ``PENULTIMATE_TAP`` and each layer's spread between images
    under ``<tap>@images`` (``BETWEEN_IMAGES``): the feature terms (``key`` None) read the first,
    ``class_output_stats`` / ``class_penultimate_stats`` the one under their key, ``class_image_stats`` the last
    (under the layers' own names)."""
    if key is None:
        return {tap: v for tap, v in reference.items()
                if tap not in (OUTPUT_TAP, PENULTIMATE_TAP) and not tap.endswith(BETWEEN_IMAGES)}  # fmt: skip
    if key == BETWEEN_IMAGES:
        return {tap.removesuffix(key): v for tap, v in reference.items() if tap.endswith(key)}
    return {tap: v for tap, v in reference.items() if tap == key}


@register_synthesis_term("feature_stats")
class FeatureStats(_StatsTerm):
    """Pooled statistics: the batch's per-channel moments -> the training set's (``normalized``: in the layer's units)."""

    batchnorm_suffices = True  # a BatchNorm teacher's running statistics stand in for a recorded file

    def forward(self, batch: SynthBatch) -> torch.Tensor:
        loss = relative_feature_stats_loss if self.normalized else feature_stats_loss
        return loss(batch.teacher.features, self.reference, moments=self._rows(batch))


@register_synthesis_term("class_feature_stats", log_name="g_class_stats")
class ClassFeatureStats(_StatsTerm):
    """Per class of the teacher's argmax (or the class a conditional generator was asked for)."""

    per_class = True

    def forward(self, batch: SynthBatch) -> torch.Tensor:
        loss = relative_class_feature_stats_loss if self.normalized else class_feature_stats_loss
        return loss(batch.teacher.features, self.reference, batch.classes(), moments=self._rows(batch))


@register_synthesis_term("class_output_stats", log_name="g_output_stats")
class ClassOutputStats(_StatsTerm):
    """The teacher's answers per class: the images made for class k get logits with the per-class mean and
    spread the teacher gave class k's training images (recorded by ``train_teacher.py``; in the layer's units,
    ``normalized``, as ``class_feature_stats``):

        L = sum_k (n_k / n) * relative_gap(mu_k(logits), var_k(logits), mu_ref_k, var_ref_k, var_pool)

    Why: the one-hot term makes every image of class k one the teacher is sure of, while the teacher's own
    training images of a class that resembles others (Fashion-MNIST's shirts: ~73% right, the rest coats,
    pullovers, T-shirts) get answers spread towards those classes. Matching that spread asks the generator for
    the ambiguous images real data holds, on which the student learns where the classes meet. Not in any paper
    we implement: the per-class feature prior (``class_feature_stats``) applied to the output layer.
    """

    per_class, recorded_key, what = True, OUTPUT_TAP, "teacher outputs (logits)"

    def __init__(self, normalized: bool = True, optional: bool = False):
        super().__init__(normalized=normalized, optional=optional)

    @property
    def teacher_taps(self) -> tuple[str, ...]:
        return ()  # the logits come with every forward

    def setup(self, context: TermContext) -> None:
        if len(context.teacher.members()) != 1:
            raise ConfigError("[[synthesis]] class_output_stats reads one teacher's recorded outputs; this teacher "
                              "source has several networks: drop the term")  # fmt: skip
        super().setup(context)

    def forward(self, batch: SynthBatch) -> torch.Tensor:
        loss = relative_class_feature_stats_loss if self.normalized else class_feature_stats_loss
        moments = {OUTPUT_TAP: image_moments(batch.teacher.logits)}  # (N, K) logits: their rows are themselves
        return loss({}, self.reference, batch.classes(), moments=moments)


@register_synthesis_term("class_penultimate_stats", log_name="g_penultimate_stats")
class ClassPenultimateStats(ClassFeatureStats):
    """The teacher's penultimate features per class (the input of its last Linear; the model's declared
    ``feature_layer`` if it has one): the images made for class k get the per-feature mean and spread *across
    images* that class k's training images had (recorded by ``train_teacher.py``; in the layer's units):

        L = sum_k (n_k / n) * relative_gap(mu_k(f), var_k(f), mu_ref_k, var_ref_k, var_pool)

    Why: ``class_feature_stats`` matches conv layers' moments over images x positions, which a batch meets with
    every image alike as long as each varies across its own positions; at the penultimate layer there are no
    positions, so the variance is between images. On the zoo's MobileNet (one seed; ``runs/class_gap.py``)
    the final generator's shirts spread 0.51 of real shirts' there and the student agrees with its teacher on
    36% of the real shirts against 81% of the generated ones: the student never saw the rest of the class.
    Not in any paper we implement: DeepInversion's per-class prior at the layer the classes are read from.
    """

    per_class, recorded_key, what = True, PENULTIMATE_TAP, "penultimate features"  # forward: ClassFeatureStats' own

    def __init__(self, normalized: bool = True, optional: bool = False):
        super().__init__(normalized=normalized, optional=optional)

    def _rows(self, batch: SynthBatch) -> Moments:
        """A head conv's input map (a network without a Linear) is recorded as its per-image average over
        positions (:func:`datafree.nets.feature_stats.pooled_feature`): the rows are that vector and its square, so the
        spread is between images as for a Linear's input."""
        rows = {}
        for tap in self.reference:
            first, second = batch.image_moments(tap)
            rows[tap] = (first, first * first) if batch.teacher.features[tap].dim() > 2 else (first, second)
        return rows
