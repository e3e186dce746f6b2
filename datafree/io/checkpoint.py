"""Weights as safetensors, written atomically, loaded without unpickling anything.

A crash mid-write never leaves a corrupt file under the final name: everything is written to a
temporary file in the same folder and moved into place with ``os.replace`` (atomic on POSIX).
Training-state folders (``accelerator.save_state``) are made atomic the same way, one level up:
each save goes to a fresh ``step_XXXXXXX`` folder and only then does the ``LATEST`` pointer move.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or does not fit the model it is loaded into."""


def _umask_mode() -> int:
    """0666 minus the process umask: what a plain open() would give (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def readable_json(value, indent: int = 2, _depth: int = 0) -> str:
    """``json.dumps(value, indent=2)`` but every list of plain numbers on one line: a 100-class confusion matrix
    takes 100 lines, not 10,000. ``json.loads`` gives back exactly what it would from ``json.dumps``."""
    pad, inner = " " * indent * _depth, " " * indent * (_depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {readable_json(v, indent, _depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, (list, tuple)) and value:
        if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value):
            return json.dumps(list(value))
        return "[\n" + ",\n".join(inner + readable_json(v, indent, _depth + 1) for v in value) + f"\n{pad}]"
    return json.dumps(value)


def save_weights(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """state_dict -> safetensors (tensors made contiguous, shared storage cloned)."""
    save_tensors(module.state_dict(), path, metadata)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Named tensors -> safetensors, atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored beside the weights ({} when the file is unreadable: load_weights reports that)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception:
        return {}


def _without_class_norm(keys) -> set[str]:
    """A generator's state keys as they are without generator.class_norm (generators/conditional.py ClassNorm wraps
    each BatchNorm as ``.norm`` beside its ``.gain`` / ``.shift`` tables)."""
    return {key.replace(".norm.", ".") for key in keys if not key.endswith((".gain.weight", ".shift.weight"))}


def load_weights(module: nn.Module, path: str | Path, what: str = "checkpoint") -> nn.Module:
    """Load a safetensors state_dict; a missing file or a shape/key mismatch says what and how to fix."""
    path = Path(path)
    if not path.exists():
        fix = ("Train it first (python train_teacher.py --config runs/<recipe>.toml) or point the recipe at the right "
               "file." if "teacher" in what else "Check the path: a data-free run writes student_last.safetensors, "
               "student_best.safetensors and generator.safetensors into its train.output_dir.")  # fmt: skip
        raise CheckpointError(f"{what} {path} does not exist. {fix}")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{what} {path} is not a .safetensors file; datafree never unpickles checkpoints. "
                              "Convert it once with datafree.io.checkpoint.convert_torch_checkpoint().")  # fmt: skip
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{what} {path} is unreadable or corrupt ({err}); retrain or restore it") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own.keys() & state.keys() if own[k].shape != state[k].shape]  # fmt: skip
    if missing and not unexpected and not wrong and all(key.split(".")[-2] == "tone" for key in missing):
        raise CheckpointError(f"{what} {path} was written without generator.tone (before it existed, or with it off), "
                              "but the recipe builds the generator with it: set generator.tone = \"off\" (in a run "
                              "folder's config.json: \"tone\": \"off\" under \"generator\") to load it as it was")  # fmt: skip
    if (missing or unexpected) and not wrong and _without_class_norm(own) == _without_class_norm(state):
        saved_with = any(key.endswith(".gain.weight") for key in state)
        setting = "on" if saved_with else "off"
        raise CheckpointError(f"{what} {path} was written {'with' if saved_with else 'without'} generator.class_norm, but "
                              f"the recipe builds the generator {'without' if saved_with else 'with'} it: set "
                              f"generator.class_norm = \"{setting}\" (in a run folder's config.json: \"class_norm\": "
                              f"\"{setting}\" under \"generator\") to load it as it was")  # fmt: skip
    if missing or unexpected or wrong:
        meta = read_metadata(path)
        hint = f" (the file says arch={meta.get('arch')!r}, num_classes={meta.get('num_classes')!r})" if meta else ""
        details = "; ".join(filter(None, [f"missing keys {missing[:5]}" if missing else "",
                                          f"unexpected keys {unexpected[:5]}" if unexpected else "",
                                          f"shape mismatch {wrong[:3]}" if wrong else ""]))  # fmt: skip
        raise CheckpointError(f"{what} {path} does not match the {type(module).__name__} being built{hint}: "
                              f"{details}. Check the recipe's arch and class count against the checkpoint.")  # fmt: skip
    module.load_state_dict(state)
    return module


def convert_torch_checkpoint(src: str | Path, dst: str | Path) -> None:
    """One-off conversion of a trusted ``torch.save``d state_dict to safetensors (weights only, no code).

    ``torch.load(weights_only=True)`` refuses anything but tensors and plain containers: a file that would run code
    when unpickled, or is no torch file at all, is a CheckpointError naming it."""
    src = Path(src)
    if not src.is_file():
        raise CheckpointError(f"{src} does not exist; give the path of a torch.save'd state_dict")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError (code or foreign objects in the pickle), a zip / format error
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{src} is not a weights-only torch checkpoint ({first[:200]}); datafree loads tensors "
                              "only: save the state_dict alone with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{src} holds no state_dict (a dict of tensors); save model.state_dict() instead")
    save_file({k: v.contiguous() for k, v in state.items()}, str(dst))


# ---- training-state folders (accelerator.save_state) ----------------------------------------------

LATEST = "LATEST"


def new_state_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step_{step:07d}"


def commit_state_dir(root: str | Path, state_dir: Path, keep: int = 2) -> None:
    """Point LATEST at a completely written state folder, then prune older ones (main process only)."""
    root = Path(root)
    atomic_write_text(root / LATEST, json.dumps({"dir": state_dir.name}))
    folders = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in folders[:-keep]:
        if old != state_dir:
            shutil.rmtree(old, ignore_errors=True)


def latest_state_dir(root: str | Path) -> Path | None:
    """The folder LATEST names, which must be a ``step_NNNNNNN`` folder inside ``root`` (a run folder is untrusted:
    LATEST may not point resume anywhere else on the machine)."""
    pointer = Path(root) / LATEST
    if not pointer.exists():
        return None
    try:
        name = json.loads(pointer.read_text())["dir"]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{pointer} is unreadable ({err}); delete it and the step_* folders, or start fresh") from None
    if not isinstance(name, str) or not re.fullmatch(r"step_\d{7}", name):
        raise CheckpointError(f"{pointer} names {name!r}, not a step_NNNNNNN folder inside {Path(root)}; refusing to "
                              "resume from it (a run folder is untrusted input)")  # fmt: skip
    folder = Path(root) / name
    return folder if folder.is_dir() else None


def check_pickles(folder: str | Path) -> None:
    """Every pickle-based file Accelerate will read from ``folder`` loads as weights only (nothing can execute);
    otherwise a CheckpointError that names the file."""
    from accelerate.utils.other import load  # torch.load(weights_only=True) + the numpy types of RNG states

    for path in sorted(Path(folder).iterdir()):
        if path.suffix in {".bin", ".pkl", ".pt", ".pth"}:
            try:
                load(path, map_location="cpu")
            except Exception as err:  # noqa: BLE001 -- UnpicklingError, EOFError, RuntimeError...: all mean "refused"
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise CheckpointError(f"{path} is not weights-only data ({first[:200]}); datafree never unpickles "
                                      "code from a run folder. Delete the folder's checkpoints or start fresh.") from None
