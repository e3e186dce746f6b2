"""The loop's own resumable state, saved and loaded without unpickling anything.

Accelerate saves the models and optimizers of a step folder itself (safetensors, and ``torch.load`` with
``weights_only=True`` for the optimizer and RNG files). Everything else the loop must resume with (the LR
schedule, the progress counters, a callback's EMA weights, the replay ring, a teacher's schedule) is NOT
registered with ``accelerator.register_for_checkpointing``, whose files are unpickled with
``weights_only=False`` (a run folder is untrusted input: a planted pickle would run code). Instead each
object's ``state_dict()`` is split into tensors (``train_state_<rank>.safetensors``) and plain values
(``train_state_<rank>.json``); a tensor's channels_last layout is recorded and restored, so resuming is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from datafree.io.checkpoint import CheckpointError, atomic_write_text, save_tensors

TENSOR = "__tensor__"  # a JSON leaf that stands for the tensor saved under its key


def _split(value: Any, key: str, tensors: dict[str, torch.Tensor], layouts: dict[str, bool]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[key] = value
        layouts[key] = value.dim() == 4 and value.is_contiguous(memory_format=torch.channels_last) and not value.is_contiguous()
        return TENSOR
    if isinstance(value, dict):
        return {str(k): _split(v, f"{key}/{k}", tensors, layouts) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, f"{key}/{i}", tensors, layouts) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"state value at {key!r} is a {type(value).__name__}: only tensors and plain values are saved")


def _join(value: Any, key: str, tensors: dict[str, torch.Tensor], layouts: dict[str, bool], device) -> Any:
    if value == TENSOR:
        if key not in tensors:
            raise CheckpointError(f"training state lacks the tensor {key!r}")
        tensor = tensors[key].to(device)
        return tensor.contiguous(memory_format=torch.channels_last) if layouts.get(key) else tensor
    if isinstance(value, dict):
        return {k: _join(v, f"{key}/{k}", tensors, layouts, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, f"{key}/{i}", tensors, layouts, device) for i, v in enumerate(value)]
    return value


def save_train_state(folder: str | Path, rank: int, objects: dict[str, Any]) -> None:
    """Each object's state_dict() under its name: tensors to safetensors, the rest to JSON (this rank's files)."""
    tensors: dict[str, torch.Tensor] = {"__format__": torch.tensor([1])}  # never an empty file (safetensors)
    layouts: dict[str, bool] = {}
    plain = {name: _split(obj.state_dict(), name, tensors, layouts) for name, obj in objects.items()}
    folder = Path(folder)
    save_tensors(tensors, folder / f"train_state_{rank}.safetensors")
    atomic_write_text(folder / f"train_state_{rank}.json", json.dumps({"state": plain, "channels_last": layouts}))


def load_train_state(folder: str | Path, rank: int, objects: dict[str, Any], device="cpu") -> None:
    """Restore every object from this rank's files; a missing, unreadable or incomplete state is a CheckpointError."""
    folder = Path(folder)
    paths = [folder / f"train_state_{rank}.json", folder / f"train_state_{rank}.safetensors"]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise CheckpointError(f"{folder} lacks {missing}: not a complete datafree checkpoint; start without --resume")
    try:
        saved = json.loads(paths[0].read_text())
        tensors = load_file(str(paths[1]))
        state, layouts = saved["state"], saved["channels_last"]
    except Exception as err:  # JSON/safetensors parse errors, a wrong layout
        raise CheckpointError(f"{folder}: the training state is unreadable or corrupt ({err}); start without --resume") from None
    absent = sorted(set(objects) - set(state))
    if absent:
        raise CheckpointError(f"{folder}: the training state has no {absent}; it was written by another recipe or "
                              "version (e.g. a [[callbacks]] or [[batches]] entry changed); start without --resume")  # fmt: skip
    for name, obj in objects.items():
        obj.load_state_dict(_join(state[name], name, tensors, layouts, device))
