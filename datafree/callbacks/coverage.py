"""The class coverage every run watches: which classes the generator actually makes.

Every run has it: build adds ``coverage`` to a recipe's ``[[callbacks]]`` that does not list it (``EVERY_RUN`` in
datafree/callbacks/base.py); listing it sets its params."""

from __future__ import annotations

import torch

from datafree.callbacks.base import Callback, CallbackContext, name_classes, per_class_field, register_callback
from datafree.config import ConfigError


@register_callback("coverage")
class ClassCoverage(Callback):
    """Which classes the generator actually makes: the teacher's argmax over the last ``window`` of steps.

    Counted on the device every step (no host sync); on each metrics line the shares go into the metrics
    line (``class_coverage``), and a class under ``min_share`` of the images (default 1/(3K)) is named there
    (``coverage_low``) and printed once, so a run never finishes silently with a student that saw no sandals.
    The line also gets the counts of every generator batch since the previous line, over all processes
    (``class_hist``): every batch, not the last one alone, because with more classes than a batch holds the batch
    at a logged step asks for a window of classes, and the windows cycle with a period that can divide
    ``train.log_every``, so the logged batches would show the same window again and again. Beyond
    ``LIST_CLASSES_UP_TO`` classes the line holds the histogram's summary (min / mean / max, the rarest classes)
    and results.json the whole run's counts (``class_hist_run``), which the report reads.
    ``summary()`` gives results.json the shares over the last ``window_fraction`` of the run.
    """

    order = 0  # first: every run has it, and its checkpoint entry keeps its name

    def __init__(self, num_classes: int = 0, steps: int = 0, window_fraction: float = 0.1, min_share: float | None = None):
        """``num_classes`` / ``steps``: the run's, set by ``attach`` when built from a recipe (params:
        ``window_fraction``, the share of the run's last steps it counts over; ``min_share``, default 1/(3K))."""
        if not 0 < window_fraction <= 1:
            raise ConfigError(f"callback 'coverage': window_fraction is the share of the run's last steps it counts "
                              f"over, in (0, 1]; got {window_fraction}")  # fmt: skip
        if min_share is not None and not 0 <= min_share < 1:
            raise ConfigError(f"callback 'coverage': min_share is a share of the images, in [0, 1); got {min_share}")
        self.window_fraction, self.given_min_share = window_fraction, min_share
        self.size(num_classes, steps)
        self.counts = None  # (window, K) per-step histograms, a ring on the device
        self.counted = 0  # steps seen: no verdict before a full window (a young generator makes anything)
        self.since_line = None  # (K,) counts since the last metrics line (class_hist): the ring may span fewer steps
        self.run_total = None  # (K,) the lines' counts over the whole run, all processes (results.json's class_hist_run)
        self.warned: set[int] = set()

    def size(self, num_classes: int, steps: int) -> None:
        self.num_classes, self.window = num_classes, max(1, int(steps * self.window_fraction))
        given = self.given_min_share
        self.min_share = given if given is not None else 1.0 / (3 * num_classes) if num_classes else 0.0

    def attach(self, context: CallbackContext) -> None:
        self.size(context.num_classes, context.steps)

    def on_synthesized(self, loop, step: int, batch) -> None:
        labels = batch.teacher.logits.detach().argmax(dim=1)
        if self.counts is None:
            self.counts = torch.zeros(self.window, self.num_classes, dtype=torch.long, device=labels.device)
        counts = torch.bincount(labels, minlength=self.num_classes)
        self.counts[step % self.window] = counts
        self.since_line = counts if self.since_line is None else self.since_line + counts
        self.counted += 1

    def shares(self) -> list[float]:
        total = self.counts.sum(dim=0).float()
        return (total / total.sum().clamp_min(1)).tolist()

    def on_log(self, loop, record: dict) -> None:
        if self.counts is None:
            return
        hist = loop.accelerator.reduce(self.since_line, reduction="sum")
        self.run_total = hist.cpu() if self.run_total is None else self.run_total + hist.cpu()
        record["class_hist"] = per_class_field(hist.tolist())
        self.since_line = torch.zeros_like(self.since_line)
        shares = self.shares()
        low = sorted((k for k, share in enumerate(shares) if share < self.min_share), key=lambda k: shares[k])
        record["class_coverage"] = per_class_field([round(s, 4) for s in shares])
        if low and self.counted >= self.window:
            record["coverage_low"] = sorted(low) if len(low) <= 20 else {"count": len(low), "rarest": low[:10]}
            new = [k for k in low if k not in self.warned]  # the rarest first
            if new:
                loop.accelerator.print(f"warning: the generator makes almost no images of class(es) {name_classes(new)} "
                                       f"(< {self.min_share:.3f} of the last {self.window} steps' images); the "
                                       "student will not learn them (see report.md's class coverage)")  # fmt: skip
                self.warned.update(new)

    def checkpoint_state(self):
        return self  # the window resumes with the run, so a resumed run reports the same coverage

    def state_dict(self) -> dict:
        counts = self.counts if self.counts is not None else torch.zeros(self.window, self.num_classes, dtype=torch.long)
        return {"counts": counts, "counted": self.counted, "warned": sorted(self.warned), "run_total": self.run_total}

    def load_state_dict(self, state: dict) -> None:
        self.counts, self.counted, self.warned = state["counts"], int(state["counted"]), set(state["warned"])
        self.window = len(self.counts)  # the window of the plan it was saved under (a budget may re-plan)
        total = state.get("run_total")  # absent from a checkpoint written before it was kept
        self.run_total = total.cpu() if total is not None else None

    def summary(self) -> dict:
        if self.counts is None:
            return {}
        shares = self.shares()
        return {"class_coverage": [round(s, 4) for s in shares],
                "classes_under_coverage": [k for k, s in enumerate(shares) if s < self.min_share],
                **({"class_hist_run": self.run_total.tolist()} if self.run_total is not None else {})}  # fmt: skip
