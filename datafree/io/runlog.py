"""What every training loop writes the same way: metrics lines, the best weights by test accuracy, the last weights.

The three loops (the data-free trainer, KD from an exported set in datafree/offline.py, the teacher on real data in
datafree/supervised.py) differ in their step, not in their bookkeeping; each writes through one :class:`RunLog`:

- ``write(record)``: one JSON line of ``metrics.jsonl`` (the main process only; numbers also to Accelerate's trackers
  when asked), so a run folder reads the same whichever loop made it;
- ``keep_best(acc, step, best, save)``: a new best test accuracy moves ``best`` (any object with ``best_acc`` /
  ``best_step``: the trainer's checkpointed progress, or a :class:`Best`) and saves the weights through ``save``;
- ``save_weights(module, name, metadata)``: safetensors on the main process (never a pickle).

Checkpoints of the loop's whole state stay with the loop that can resume (datafree/trainer.py, datafree/io/trainstate.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch.nn as nn
from accelerate import Accelerator

from datafree.io.checkpoint import save_weights

METRICS = "metrics.jsonl"


class HasBest(Protocol):
    best_acc: float
    best_step: int


@dataclass
class Best:
    """The best test accuracy so far and the step (or epoch) it was reached at; -1 before any evaluation."""

    best_acc: float = -1.0
    best_step: int = -1


class RunLog:
    """One run folder's metrics lines and weights, written by the main process of ``accelerator``."""

    def __init__(self, folder: str | Path, accelerator: Accelerator, fresh: bool = False, metrics: str = METRICS):
        """``fresh``: an earlier run's metrics lines in ``folder`` are removed first (a run started over)."""
        self.folder, self.accelerator = Path(folder), accelerator
        self.metrics_path = self.folder / metrics
        if fresh and self.main:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.metrics_path.unlink(missing_ok=True)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def write(self, record: dict[str, Any], track: bool = False) -> None:
        """Append ``record`` as one line; with ``track``, its numbers also go to the trackers at ``record["step"]``."""
        if not self.main:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if track:
            self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=record["step"])

    def keep_best(self, acc: float, step: int, best: HasBest, save: Callable[[], None]) -> bool:
        """Whether ``acc`` beats ``best``; if so ``best`` moves to (acc, step) and ``save()`` writes the weights
        (``save`` is called on every process: a loop's own saving decides who writes)."""
        if acc <= best.best_acc:
            return False
        best.best_acc, best.best_step = acc, step
        save()
        return True

    def save_weights(self, module: nn.Module, name: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """``module``'s weights to ``folder / name`` (or ``name`` itself when absolute) on the main process."""
        path = Path(name) if Path(name).is_absolute() else self.folder / name
        if self.main:
            save_weights(self.accelerator.unwrap_model(module), path, metadata)
        return path
