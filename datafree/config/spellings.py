"""Old spellings of a recipe, translated: keys that became registered pieces keep working in recipes, command
lines and run folders (docs/recipes.md, "The old spelling"). New pieces and callbacks never add to these tables.
"""

from __future__ import annotations

from typing import Any

from datafree.config import ConfigError, PieceConfig, RuntimeConfig, _coerce

# [train] keys of the student's batches before they became [[batches]] pieces: old key -> (piece, its param; None:
# the key turns the piece on or off), and the old key's type. Old recipes, command lines and run folders keep
# working through this table (translate_batch_keys); new pieces never add to it.
LEGACY_BATCH_KEYS: dict[str, tuple[str, str | None, type]] = {
    "replay": ("replay", "size", int), "fresh_batches": ("fresh", None, bool), "fresh_batch_size": ("fresh", "size", int),
    "pool": ("pool", "size", int), "pool_share": ("pool", "share", float), "augment_flip": ("augment", "flip", bool),
    "augment_shift": ("augment", "shift", int), "augment_mix": ("augment", "mix", float),
    "augment_blur": ("augment", "blur", float),
}  # fmt: skip
_OFF = {"replay": 0, "pool": 0}  # these sizes turn their piece off at 0

# keys of the loop's callbacks before they became [[callbacks]]: (section, old key) -> (callback, its param, type);
# 0 turns the callback off. Translated by translate_callback_keys; new callbacks never add to it.
LEGACY_CALLBACK_KEYS: dict[tuple[str, str], tuple[str, str, type]] = {
    ("train", "ema_decay"): ("ema", "decay", float), ("train", "precise_bn"): ("precise_bn", "batches", int),
    ("generator", "quota"): ("quota", "share", float), ("generator", "blend"): ("blend", "share", float),
    ("train", "warmup"): ("warmup", "fraction", float),
}  # fmt: skip


# [train] keys that moved to [runtime] (how the step is computed, not what is learned): same names, same values.
RUNTIME_KEYS: tuple[str, ...] = tuple(RuntimeConfig.__dataclass_fields__)


def moved_runtime_keys(sections: dict[str, Any], where: str = "[train]") -> dict[str, Any]:
    """``sections`` (a recipe's tables, or the Python call's section keywords) with ``train``'s runtime keys moved to
    ``runtime``; a key given in both places is refused, naming the new spelling."""
    train = sections.get("train")
    if not isinstance(train, dict) or not set(train) & set(RUNTIME_KEYS):
        return sections
    moved = {k: v for k, v in train.items() if k in RUNTIME_KEYS}
    runtime = dict(sections.get("runtime") or {})
    both = sorted(set(moved) & set(runtime))
    if both:
        raise ConfigError(f"{where} {both} and [runtime] {both} both set; these keys live in [runtime] now: keep "
                          "them there only (docs/recipes.md, \"Runtime\")")  # fmt: skip
    out = {**sections, "train": {k: v for k, v in train.items() if k not in RUNTIME_KEYS}}
    out["runtime"] = {**runtime, **moved}
    return out


def translate_callback_keys(callbacks: list[PieceConfig], old: dict[tuple[str, str], Any]) -> list[PieceConfig]:
    """``callbacks`` edited by old keys (``train.ema_decay = 0.999`` -> an ``ema`` callback of that decay,
    ``generator.blend = 0`` -> no ``blend``...), as those keys meant. The callbacks' own checks run at build."""
    callbacks = [PieceConfig(c.name, dict(c.params)) for c in callbacks]
    for (section, key), value in old.items():
        name, param, kind = LEGACY_CALLBACK_KEYS[(section, key)]
        value = _coerce(value, kind, f"{section}.{key}")
        callbacks = [c for c in callbacks if c.name != name] if value == 0 else callbacks
        if value == 0:
            continue
        found = next((c for c in callbacks if c.name == name), None)
        if found is None:
            found = PieceConfig(name, {})
            callbacks.append(found)
        found.params[param] = value
    return callbacks


def translate_batch_keys(pieces: list[PieceConfig], old: dict[str, Any], where: str = "train") -> list[PieceConfig]:
    """``pieces`` edited by old ``[train]`` keys (``replay = 4`` -> a ``replay`` piece of size 4; ``fresh_batches =
    false`` -> no ``fresh`` piece; ``augment_flip = true`` -> the ``augment`` piece's ``flip``...), as those keys
    meant: a piece a key turns on is added, one it turns off removed, an ``augment`` piece left with nothing on
    removed. The pieces' own checks still run when the run is built."""
    pieces = [PieceConfig(p.name, dict(p.params)) for p in pieces]
    values = {k: _coerce(v, LEGACY_BATCH_KEYS[k][2], f"{where}.{k}") for k, v in old.items()}
    if values.get("fresh_batch_size", 0) < 0 or values.get("fresh_batch_size") == 1:
        raise ConfigError(f"{where}.fresh_batch_size = {values['fresh_batch_size']} sizes the fresh batches: at least 2 "
                          "images (the generator has BatchNorm), or 0 for train.batch_size")  # fmt: skip
    find = lambda name: next((p for p in pieces if p.name == name), None)  # noqa: E731
    for key in ("fresh_batches", "replay", "pool"):  # the switches first, then the params of what is on
        if key not in values:
            continue
        piece, param, _ = LEGACY_BATCH_KEYS[key]
        on = values[key] != _OFF.get(key, False)
        if not on:
            pieces = [p for p in pieces if p.name != piece]
        elif find(piece) is None:
            pieces.append(PieceConfig(piece, {}))
        if on and param:
            find(piece).params[param] = values[key]
    for key, value in values.items():
        piece, param, _ = LEGACY_BATCH_KEYS[key]
        if key in ("fresh_batches", "replay", "pool"):
            continue
        if piece == "augment" and find("augment") is None and value:
            pieces.append(PieceConfig("augment", {}))
        if find(piece) is not None:
            find(piece).params[param] = value
    augment = find("augment")
    if augment is not None and not any(augment.params.get(k) for k in ("flip", "shift", "mix", "blur")):
        pieces.remove(augment)
    return pieces
