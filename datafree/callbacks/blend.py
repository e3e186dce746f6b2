"""Boundary images for the conditional generator: a share of every batch made for a blend of two classes.

The one-hot term makes every generated image one the teacher is sure of, yet a student learns a boundary from
images near it: the zoo's worst class, Shirt, is lost to Pullover, Coat and T-shirt, whose generated images
are all sure ones. ``ClassBlend`` (``[[callbacks]] blend``, ``share = b``) asks the conditional generator for blends in a
share ``b`` of every batch (the generator's and the student's fresh ones)::

    target of a blend   t_i = lam_i * e_a + (1 - lam_i) * e_c,   lam_i ~ U(0.5, 0.8)
    a = the class the position was given (i mod K, or the quota's), c ~ P(c | a), c != a
    P(c | a) = (1 - u) * N[a, c] / sum_{c' != a} N[a, c'] + u / (K - 1)                       (u = 0.25)
    N[a, c] <- m * N[a, c] + (1 - m) * mean_{i pure, asked for a} softmax(t(x_i))_c,  N[a, a] = 0  (m = 0.9)

The partner comes from the teacher's own leftover probability on the pure images made for ``a``: its neighbours
as the teacher sees them, measured on the generator's images (no data), with a uniform floor ``u`` so every
pair is visited (uniform until the first measurement). The latent of a blend is scaled by the blend of the two
class embeddings (``t_i @ E``: generators/conditional.py), the one-hot term's cross-entropy targets ``t_i`` (the
teacher must give the blend, not a sure answer), and the per-class terms count the image for its main class
``a``. Data Impressions (Nayak et al., ICML 2019, "Zero-Shot Knowledge Distillation in Deep Networks") sample
soft targets from a Dirichlet shaped by the final layer's class similarity; here the targets mix two classes,
the similarity is the teacher's answers on the generator's images (any architecture: no final layer to find),
and the pure images stay, so every class is still made. Measured on the zoo: docs/changelog.md.
"""

from __future__ import annotations


import torch

from datafree.callbacks.base import LIST_CLASSES_UP_TO, Callback, CallbackContext, LabelFn, register_callback
from datafree.config import ConfigError


@register_callback("blend")
class ClassBlend(Callback):
    """Soft targets (n, K) for the conditional generator: ``base``'s classes, a share ``blend`` of them blended."""

    momentum, floor, low, high = 0.9, 0.25, 0.5, 0.8
    order = 70  # over the classes the earlier label callbacks chose

    def __init__(self, share: float = 0.25, num_classes: int = 0, base: LabelFn | None = None):
        if not 0.0 < share < 1.0:
            raise ConfigError(f"[[callbacks]] \"blend\": share is the share of each batch made for two-class blends: "
                              f"in (0, 1), got {share!r}")  # fmt: skip
        self.num_classes, self.blend, self.base = num_classes, float(share), base
        self.neighbours: torch.Tensor | None = None  # N[a, c], on the device (lazy)

    def check(self, context: CallbackContext) -> None:
        if not context.conditional:
            raise ConfigError("[[callbacks]] \"blend\" asks the generator for blends of two classes, which only a "
                              "conditional generator takes; set generator.conditional = true or drop it")  # fmt: skip
        if context.num_classes < 2:
            raise ConfigError("[[callbacks]] \"blend\" needs at least two classes to blend; drop it")

    def attach(self, context: CallbackContext) -> None:
        self.num_classes = context.num_classes

    def wrap_labels(self, labels: LabelFn | None, context: CallbackContext) -> LabelFn:
        self.base = labels
        return self.labels

    def partners(self, device: torch.device | str) -> torch.Tensor:
        """P(c | a), (K, K), zero on the diagonal."""
        k = self.num_classes
        off = 1.0 - torch.eye(k, device=device)
        uniform = off / (k - 1)
        if self.neighbours is None:
            return uniform
        mass = self.neighbours.to(device) * off
        measured = mass / mass.sum(dim=1, keepdim=True).clamp_min(1e-12)
        measured = torch.where(mass.sum(dim=1, keepdim=True) > 0, measured, uniform)
        return (1 - self.floor) * measured + self.floor * uniform

    def labels(self, n: int, device: torch.device | str, rng: torch.Generator) -> torch.Tensor:
        """(n, K) targets drawn with the synthesizer's RNG (on the batch's device), so resume replays them."""
        main = self.base(n, device, rng)
        targets = torch.nn.functional.one_hot(main, self.num_classes).float()
        count = int(round(self.blend * n))
        if count == 0:
            return targets
        where = torch.randperm(n, generator=rng, device=rng.device)[:count]
        partner = torch.multinomial(self.partners(rng.device)[main[where]], 1, generator=rng).squeeze(1)
        lam = self.low + (self.high - self.low) * torch.rand(count, 1, generator=rng, device=rng.device)
        second = torch.nn.functional.one_hot(partner, self.num_classes).float()
        targets[where] = lam * targets[where] + (1 - lam) * second
        return targets

    @torch.no_grad()
    def on_synthesized(self, loop, step: int, batch) -> None:
        if batch.labels is None or not batch.labels.is_floating_point():
            return
        pure = batch.labels.max(dim=1).values == 1
        classes = batch.labels.argmax(dim=1)[pure]
        probs = batch.teacher.logits.detach().float().softmax(dim=1)[pure]
        k = self.num_classes
        sums = torch.zeros(k, k, device=probs.device).index_add_(0, classes, probs)
        counts = torch.bincount(classes, minlength=k).float()
        if loop.accelerator.num_processes > 1:  # every rank draws from the same P(c | a)
            sums = loop.accelerator.reduce(sums, reduction="sum")
            counts = loop.accelerator.reduce(counts, reduction="sum")
        measured = sums / counts.clamp_min(1).unsqueeze(1) * (1.0 - torch.eye(k, device=sums.device))
        seen = (counts > 0).unsqueeze(1)
        if self.neighbours is None:
            self.neighbours = torch.where(seen, measured, torch.zeros_like(measured))
        else:  # a class absent from this batch keeps its last row
            last = self.neighbours.to(measured.device)
            self.neighbours = torch.where(seen, self.momentum * last + (1 - self.momentum) * measured, last)

    def nearest(self) -> list[int]:
        """Each class's most likely partner (for the log)."""
        return self.partners("cpu").argmax(dim=1).tolist()

    def on_log(self, loop, record: dict) -> None:
        partners = self.nearest()  # a class index per class: listed up to 100 classes, counted beyond
        record["blend_partner"] = partners if len(partners) <= LIST_CLASSES_UP_TO else {"classes": len(partners)}

    def checkpoint_state(self):
        return self  # resume draws from the same P(c | a)

    def state_dict(self) -> dict:
        return {"neighbours": self.neighbours.detach().cpu() if self.neighbours is not None else torch.zeros(0)}

    def load_state_dict(self, state: dict) -> None:
        self.neighbours = state["neighbours"] if state["neighbours"].numel() else None

    def summary(self) -> dict:
        return {"blend_partner": self.nearest()}
