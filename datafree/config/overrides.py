"""Command-line overrides of a recipe: ``--section.field value``, ``--synthesis JSON``, ``--distill JSON`` and
``--synthesis.<term>[.<param>] VALUE``, parsed into the field's type and checked by the recipe's own validator
(datafree/config/__init__.py), so a value from the command line and the same value from TOML are one value."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import fields
from typing import Any

from datafree.config import (SECTIONS, TERM_LISTS, Config, ConfigError, PieceConfig, TermConfig, WrapperConfig, _coerce,
                             from_dict, set_synthesis_value, validate)  # fmt: skip
from datafree.config.spellings import (LEGACY_BATCH_KEYS, LEGACY_CALLBACK_KEYS, RUNTIME_KEYS, translate_batch_keys,
                                translate_callback_keys)  # fmt: skip

PIECE_LISTS = ("batches", "callbacks")  # lists of registered pieces: --<list> JSON, --<list>.<name>[.<param>] VALUE


def _parse_text(text: str, kind: Any, key: str) -> Any:
    """A command-line string in the shape of its field, then the same validator as TOML values."""
    if kind is bool:
        if text.lower() in {"1", "true", "yes", "on"}:
            return True
        if text.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"--{key} expects a bool (true/false), got {text!r}")
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"--{key} expects a {kind.__name__}, got {text!r}") from None
    if kind is str:
        return text
    if text.strip()[:1] in "[{":
        try:
            return _coerce(json.loads(text), kind, key)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--{key}: {err}") from None
    args = typing.get_args(kind)
    return [_parse_text(v, args[0] if args else str, key) for v in text.split(",") if v]


def _loose(text: str) -> Any:
    """A term parameter from the command line: JSON when it parses, a comma list, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [v for v in text.split(",") if v] if "," in text else text


def add_override_arguments(parser: argparse.ArgumentParser, sections=None, defaults: Config | None = None) -> None:
    """One ``--section.field`` option per value of ``sections`` (default: all but teacher training), so
    ``--help`` documents exactly what the program reads."""
    defaults = defaults or from_dict({})  # what a recipe that leaves a key out gets: the "default" preset
    sections = sections or [s for s in SECTIONS if s != "teacher_training"]
    parser.add_argument("--name", default=None, help=f"run name (default {defaults.name!r})")
    hints = {s: typing.get_type_hints(SECTIONS[s]) for s in sections}
    for section in sections:
        group = parser.add_argument_group(f"[{section}]")
        for f in fields(getattr(defaults, section)):
            value = getattr(getattr(defaults, section), f.name)
            if hints[section][f.name] == list[WrapperConfig]:
                metavar = "JSON"
            else:
                metavar = type(value).__name__.upper()
            group.add_argument(f"--{section}.{f.name}", dest=f"{section}.{f.name}", default=None, metavar=metavar,
                               help=f"recipe's value; preset default: {value!r}")  # fmt: skip
    if "train" in sections:
        parser.add_argument("--synthesis", default=None, metavar="JSON",
                            help="generator terms as JSON; or --synthesis.<term> WEIGHT, --synthesis.<term>.<param> VALUE")  # fmt: skip
        parser.add_argument("--distill", default=None, metavar="JSON",
                            help='student loss terms as JSON, e.g. \'[{"name":"kd"},{"name":"nst","weight":50}]\'')  # fmt: skip
        parser.add_argument("--batches", default=None, metavar="JSON",
                            help="student-batch pieces as JSON, e.g. '[{\"name\":\"fresh\",\"params\":{\"size\":64}}]'; or "
                                 "--batches.<piece>.<param> VALUE (adds the piece), --batches.<piece> off (drops it)")  # fmt: skip
        parser.add_argument("--callbacks", default=None, metavar="JSON",
                            help="the loop's callbacks as JSON, e.g. '[{\"name\":\"ema\",\"params\":{\"decay\":0.999}}]'; or "
                                 "--callbacks.<name>.<param> VALUE (adds it), --callbacks.<name> off (drops it)")  # fmt: skip
        for key in LEGACY_BATCH_KEYS:  # the old spelling: translated onto [[batches]] (docs/recipes.md)
            parser.add_argument(f"--train.{key}", dest=f"legacy.{key}", default=None, help=argparse.SUPPRESS)
    if "train" in sections and "runtime" in sections:  # [train] keys that moved to [runtime]: the old spelling
        for key in RUNTIME_KEYS:
            parser.add_argument(f"--train.{key}", dest=f"runtime.{key}", default=None, help=argparse.SUPPRESS)
    for section, key in LEGACY_CALLBACK_KEYS:  # ...and onto [[callbacks]]
        if section in sections:
            parser.add_argument(f"--{section}.{key}", dest=f"legacy_cb.{section}.{key}", default=None, help=argparse.SUPPRESS)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args`` that also accepts ``--synthesis.<term>[.<param>] VALUE`` and ``--batches.<piece>[.<param>]
    VALUE`` (terms and pieces are open-ended)."""
    args, rest = parser.parse_known_args(argv)
    pairs, i = [], 0
    while i < len(rest):
        item = rest[i]
        open_ended = item.startswith(("--synthesis.", *(f"--{name}." for name in PIECE_LISTS)))
        if open_ended and "=" in item:
            pairs.append(tuple(item[2:].split("=", 1)))
            i += 1
        elif open_ended and i + 1 < len(rest):
            pairs.append((item[2:], rest[i + 1]))
            i += 2
        else:
            parser.error(f"unrecognized arguments: {' '.join(rest[i:])}")
    args.synthesis_values = [(k, v) for k, v in pairs if k.startswith("synthesis.")]
    args.piece_values = [(k, v) for k, v in pairs if k.split(".", 1)[0] in PIECE_LISTS]
    return args


def set_piece_value(config: Config, key: str, value: Any) -> None:
    """``batches.fresh.size`` -> that piece's param (the piece added if absent); ``callbacks.ema`` with ``off`` -> the
    callback dropped."""
    where, _, rest = key.partition(".")
    name, _, param = rest.partition(".")
    pieces = getattr(config, where)
    if not param:
        if value not in ("off", False, 0):
            raise ConfigError(f"--{where}.{name} takes only 'off' (drop it); set a param with --{where}.{name}.<param> VALUE")
        setattr(config, where, [p for p in pieces if p.name != name])
        return
    piece = next((p for p in pieces if p.name == name), None)
    if piece is None:
        piece = PieceConfig(name, {})
        pieces.append(piece)
    piece.params = {**piece.params, param: value}


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    config = dataclasses.replace(config)
    if getattr(args, "name", None):
        config.name = args.name
    for key, text in vars(args).items():
        if "." not in key or text is None:
            continue
        section, name = key.split(".", 1)
        if section in ("legacy", "legacy_cb"):
            continue
        target = dataclasses.replace(getattr(config, section))
        setattr(target, name, _parse_text(text, typing.get_type_hints(type(target))[name], key))
        setattr(config, section, target)
    whole_lists = [(key, list[TermConfig], "term tables") for key in TERM_LISTS]
    whole_lists += [(key, list[PieceConfig], "{name, params} tables") for key in PIECE_LISTS]
    for key, kind, what in whole_lists:  # --synthesis / --distill / --batches / --callbacks JSON: the whole list
        if getattr(args, key, None):
            try:
                setattr(config, key, _coerce(json.loads(getattr(args, key)), kind, key))
            except json.JSONDecodeError as err:
                raise ConfigError(f"--{key} must be a JSON list of {what}: {err}") from None
    legacy = {key: vars(args)[f"legacy.{key}"] for key in LEGACY_BATCH_KEYS if vars(args).get(f"legacy.{key}") is not None}
    if legacy:  # --train.replay 4 and the like: the old spelling, onto the pieces
        kinds = {key: LEGACY_BATCH_KEYS[key][2] for key in legacy}
        values = {key: _parse_text(text, kinds[key], f"train.{key}") for key, text in legacy.items()}
        config.batches = translate_batch_keys(config.batches, values)
    legacy = {(s, k): vars(args)[f"legacy_cb.{s}.{k}"] for s, k in LEGACY_CALLBACK_KEYS
              if vars(args).get(f"legacy_cb.{s}.{k}") is not None}  # fmt: skip
    if legacy:  # --train.precise_bn 20, --generator.blend 0.25: the old spelling, onto the callbacks
        values = {sk: _parse_text(text, LEGACY_CALLBACK_KEYS[sk][2], ".".join(sk)) for sk, text in legacy.items()}
        config.callbacks = translate_callback_keys(config.callbacks, values)
    config.batches = [PieceConfig(p.name, dict(p.params)) for p in config.batches]
    config.callbacks = [PieceConfig(p.name, dict(p.params)) for p in config.callbacks]
    for key, text in getattr(args, "piece_values", []):
        set_piece_value(config, key, _loose(text))
    config.synthesis = [dataclasses.replace(t) for t in config.synthesis]
    for key, text in getattr(args, "synthesis_values", []):
        set_synthesis_value(config, key.removeprefix("synthesis."), _loose(text))
    validate(config)
    return config
