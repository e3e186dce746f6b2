"""Class-balanced generation: any generator, its latent code scaled by a learned per-class embedding.

DAFL's generator is unconditional and its class balance rests on the entropy loss alone; on Fashion-MNIST
with the feature-statistics prior it was seen to make three T-shirts for every pullover, and the student
learnt pullovers worst. Here the i-th image of every batch is assigned class ``i mod num_classes``
(:func:`balanced_labels`), the latent is multiplied by that class's embedding (as conditional GANs do),
and the one-hot loss targets the assigned class instead of the teacher's argmax: every batch is balanced
by construction. The embeddings start at N(1, embed_std^2) per coordinate: with 1.0 the classes start apart (at
0.1 a ResNet-20 teacher's run still had cross-entropy 3.5 against the asked classes after
60 generator steps, against 2.4 at 1.0 with the default preset: runs/bench_teachers.py). ``forward(z)`` keeps the plain-generator signature, so export and notebooks need nothing new;
``forward(z, labels)`` makes other class counts (the ``quota`` callback: datafree/callbacks/quota.py); ``labels`` may also be
soft targets (n, K), whose latent is scaled by the blend of the embeddings, ``t @ E`` (the ``blend`` callback:
datafree/callbacks/blend.py). Where a batch cannot hold every class (K > batch) build adds a per-class offset of the
latent; ``generator.class_norm`` adds a per-class gain and shift after each of the generator's BatchNorms
(:class:`ClassNorm`).
"""

from __future__ import annotations

import torch
from torch import nn


class _BatchClasses:
    """The classes of the batch being made, set by :class:`ClassConditional` for its :class:`ClassNorm` layers (one
    object shared by all of them: a deep copy of the generator, e.g. a moving average of it, copies it once and
    keeps it shared)."""

    labels: torch.Tensor | None = None


class ClassNorm(nn.Module):
    """One of the generator's BatchNorms, then a per-class gain and shift (conditional BatchNorm, de Vries et al.,
    "Modulating early visual processing by language", NeurIPS 2017; as in the class-conditional GANs since):

        y_i = BN(x)_i * (1 + G[k_i]) + S[k_i],    G = 0 at the start, S ~ N(0, shift_std^2)

    (for soft targets t_i, the blends G^T t_i and S^T t_i). Why: the latent's class scale and offset reach the
    generator only through its first layer; the per-class shift moves every layer's features per class from the
    start, as the offset moves the latent (:class:`ClassConditional`). Measured on the zoo's two 100-class pairs at 3
    seeds: no better than the generator without it (-0.1 and -1.8 points on average, seed to seed -4.9 to +6.3), so
    ``generator.class_norm`` is off unless asked for (docs/changelog.md, 2026-12-07, night). Deviation from the
    paper: the gain and shift are free per-class tables, not predicted from an embedding, and the shift starts
    random (the classes start apart) rather than at zero."""

    def __init__(self, norm: nn.BatchNorm2d, num_classes: int, classes: _BatchClasses, shift_std: float = 0.5):
        super().__init__()
        self.norm, self.classes = norm, classes
        self.gain = nn.Embedding(num_classes, norm.num_features)
        self.shift = nn.Embedding(num_classes, norm.num_features)
        nn.init.zeros_(self.gain.weight)
        nn.init.normal_(self.shift.weight, mean=0.0, std=shift_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, labels = self.norm(x), self.classes.labels
        if labels is None:  # the inner generator called on its own: the plain BatchNorm
            return out
        gain = class_code(self.gain, labels).to(out.dtype)[:, :, None, None]
        shift = class_code(self.shift, labels).to(out.dtype)[:, :, None, None]
        return out * (1 + gain) + shift


def class_code(table: nn.Embedding, labels: torch.Tensor) -> torch.Tensor:
    """Each image's row of ``table``: its class's, or the blend ``labels[i] @ table`` for soft targets (n, K)."""
    if labels.is_floating_point():
        return labels.to(table.weight.dtype) @ table.weight
    return table(labels)


def with_class_norms(generator: nn.Module, num_classes: int, classes: _BatchClasses) -> int:
    """Replace each affine BatchNorm2d of ``generator`` (in place, in module order) by a :class:`ClassNorm` around
    it; how many. Non-affine ones (DAFL's output normalization) stay as they are."""
    found = [(parent, name, child) for parent in generator.modules() for name, child in parent.named_children()
             if isinstance(child, nn.BatchNorm2d) and child.affine]  # fmt: skip
    for parent, name, child in found:
        setattr(parent, name, ClassNorm(child, num_classes, classes))
    return len(found)


def balanced_labels(n: int, num_classes: int, device: torch.device | str | None = None, start: int = 0) -> torch.Tensor:
    """start, start + 1, ..., K-1, 0, 1, ...: the class assigned to each position of a batch of ``n`` (``start``: where
    the window begins when K > n, datafree/callbacks/rotation.py)."""
    return (torch.arange(n, device=device) + start) % num_classes


class ClassConditional(nn.Module):
    """``offset``: also add a per-class code to the latent, ``z * E[k] + B[k]`` (B ~ N(0, offset_std^2)). With the
    scale alone every class's latent has mean 0 and the class lives only in its per-coordinate spread, which the
    generator could decode for 10 classes but not for 100: on the 100-class ``fmnist-pairs100`` teacher the one-hot
    term alone stayed above 7 nats for 80 steps (docs/changelog.md, 2026-12-05). build turns it on where a batch
    cannot hold every class (K > batch).

    ``offset_std = 3``: each coordinate of ``z * E[k]`` spreads by about sqrt(E[E^2]) = sqrt(2) around 0, so at
    B ~ N(0, 1) two classes' codes lay about as far apart as one class's latents from their mean: after 100 steps the
    one-hot term was still at 4.2 nats (ln 100 = 4.6), and over the last tenth of the runs some classes were made
    almost never (rarest share 0.000-0.003, under 1/(3K)). At 3 the classes start apart (1.5 nats after 100 steps)
    and every class is made (0.004-0.005 in all six runs of the two 100-class pairs). The price is less room for
    ``z`` within a class: the students' accuracy moved +1.7 points on one pair and -1.4 on the other (3 seeds
    each), and at 5 it fell (docs/changelog.md, 2026-12-06, evening)."""

    def __init__(self, generator: nn.Module, num_classes: int, latent_dim: int, embed_std: float = 1.0,
                 offset: bool = False, offset_std: float = 3.0, class_norm: bool = False):  # fmt: skip
        super().__init__()
        self.generator, self.num_classes = generator, num_classes
        self.embed = nn.Embedding(num_classes, latent_dim)
        nn.init.normal_(self.embed.weight, mean=1.0, std=embed_std)
        self.offset = nn.Embedding(num_classes, latent_dim) if offset else None
        if self.offset is not None:
            nn.init.normal_(self.offset.weight, mean=0.0, std=offset_std)
        self.classes = _BatchClasses()
        self.class_norms = with_class_norms(generator, num_classes, self.classes) if class_norm else 0

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Image i made for class ``labels[i]`` (default: i mod K, balanced), or for the blend ``labels[i] @ E``."""
        if labels is None:
            labels = balanced_labels(z.shape[0], self.num_classes, z.device)
        latent = z * class_code(self.embed, labels)
        if self.offset is not None:
            latent = latent + class_code(self.offset, labels)
        self.classes.labels = labels if self.class_norms else None
        try:
            return self.generator(latent)
        finally:
            self.classes.labels = None
