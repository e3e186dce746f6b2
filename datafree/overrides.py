"""Command-line overrides of a recipe: ``--section.field value``, ``--synthesis JSON``, ``--distill JSON`` and
``--synthesis.<term>[.<param>] VALUE``, parsed into the field's type and checked by the recipe's own validator
(datafree/config.py), so a value from the command line and the same value from TOML are one value."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import fields
from typing import Any

from datafree.config import (SECTIONS, TERM_LISTS, Config, ConfigError, TermConfig, WrapperConfig, _coerce, from_dict,
                             set_synthesis_value, validate)  # fmt: skip


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


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args`` that also accepts ``--synthesis.<term>[.<param>] VALUE`` (terms are open-ended)."""
    args, rest = parser.parse_known_args(argv)
    pairs, i = [], 0
    while i < len(rest):
        item = rest[i]
        if item.startswith("--synthesis.") and "=" in item:
            pairs.append(tuple(item[2:].split("=", 1)))
            i += 1
        elif item.startswith("--synthesis.") and i + 1 < len(rest):
            pairs.append((item[2:], rest[i + 1]))
            i += 2
        else:
            parser.error(f"unrecognized arguments: {' '.join(rest[i:])}")
    args.synthesis_values = pairs
    return args


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    config = dataclasses.replace(config)
    if getattr(args, "name", None):
        config.name = args.name
    for key, text in vars(args).items():
        if "." not in key or text is None:
            continue
        section, name = key.split(".", 1)
        target = dataclasses.replace(getattr(config, section))
        setattr(target, name, _parse_text(text, typing.get_type_hints(type(target))[name], key))
        setattr(config, section, target)
    for key in TERM_LISTS:
        if getattr(args, key, None):
            try:
                setattr(config, key, _coerce(json.loads(getattr(args, key)), list[TermConfig], key))
            except json.JSONDecodeError as err:
                raise ConfigError(f"--{key} must be a JSON list of term tables: {err}") from None
    config.synthesis = [dataclasses.replace(t) for t in config.synthesis]
    for key, text in getattr(args, "synthesis_values", []):
        set_synthesis_value(config, key.removeprefix("synthesis."), _loose(text))
    validate(config)
    return config
