"""One argument helper for everything that measures: ``datafree bench`` and the scripts in ``runs/``.

Every such program spells the shared options the same way:

- ``--recipe NAME|PATH``: a shipped recipe's name (``datafree recipes``) or a TOML file (``--config`` is the old
  spelling, still accepted);
- ``--seeds N`` (seeds 0 .. N-1), ``--output-root DIR``, ``--smoke`` (generated stand-in data, seconds: proves the
  script runs, its numbers mean nothing), ``--record NAME`` (the figures, with their provenance, to
  results/NAME.json);
- ``--section.key VALUE``: any recipe value, as ``datafree train`` takes it (``--synthesis.<term>.<param>``,
  ``--batches.<piece>.<param>`` and the rest: :mod:`datafree.config.overrides`).

A script that sets a recipe value itself (e.g. ``train.steps`` from its own ``--steps``) lists it in ``owned``: an
override of that key is refused naming the script's option, instead of being silently replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datafree.config import Config, ConfigError, load_toml
from datafree.config.overrides import add_override_arguments, apply_overrides, parse_args
from datafree.io.results import in_repo
from datafree.recipes import recipe_path


def bench_parser(doc: str, *, recipe: str | None = "fmnist", seeds: int | None = None,
                 output_root: str | None = None, smoke: bool = True, record: bool = True,
                 overrides: bool = True) -> argparse.ArgumentParser:  # fmt: skip
    """A parser with the shared options (each left out where its argument is None / False); the program adds its
    own after. ``doc`` (the module's docstring) is the ``--help`` text."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if recipe is not None:
        parser.add_argument("--recipe", "--config", dest="recipe", default=recipe,
                            help=f"a shipped recipe's name (`datafree recipes`) or a TOML file (default {recipe})")  # fmt: skip
    if seeds is not None:
        parser.add_argument("--seeds", type=int, default=seeds, help=f"seeds 0 .. N-1 (default {seeds})")
    if output_root is not None:
        parser.add_argument("--output-root", default=output_root, help=f"where runs are written (default {output_root})")
    if smoke:
        parser.add_argument("--smoke", action="store_true",
                            help="generated stand-in data, seconds per run: proves the script runs; numbers meaningless")  # fmt: skip
    if record:
        parser.add_argument("--record", default="", metavar="NAME", help="also write the figures, with their "
                            "provenance, to results/NAME.json (a path ending in .json: there)")  # fmt: skip
    if overrides:
        add_override_arguments(parser)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None,
          owned: dict[str, str] | None = None) -> argparse.Namespace:  # fmt: skip
    """The arguments, with the open-ended ``--synthesis.<term>`` / ``--batches.<piece>`` forms; ``owned`` maps a recipe
    key the program sets itself to its own option, and an override of such a key is an error naming that option."""
    args = parse_args(parser, argv)
    for key, option in (owned or {}).items():
        if vars(args).get(key) is not None:
            parser.error(f"--{key} is set by this program's {option}; pass {option} instead")
    return args


def load_recipe(recipe: str | Path, preset: str | None = None) -> Config:
    """``--recipe`` (a shipped recipe's name or a file; laid over ``preset`` instead of its own where given) as a
    Config, before any override: a script lays its own settings, e.g. --smoke's, first. A missing file or a bad
    recipe exits with one line naming it."""
    try:
        return load_toml(recipe_path(recipe), preset=preset)
    except (FileNotFoundError, ConfigError) as err:
        sys.exit(f"error: {err}")


def overridden(config: Config, args: argparse.Namespace) -> Config:
    """``config`` with the command line's ``--section.key`` values laid over it (a bad value exits with one line)."""
    if not hasattr(args, "synthesis_values"):  # the program took no overrides
        return config
    try:
        return apply_overrides(config, args)
    except ConfigError as err:
        sys.exit(f"error: {err}")


def given_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The ``--section.key`` values actually given (for a results file's record of what was measured)."""
    given = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    given.update({k: getattr(args, k) for k in ("name", "synthesis", "distill", "batches", "callbacks") if getattr(args, k, None)})
    given.update(dict(getattr(args, "synthesis_values", [])))
    given.update(dict(getattr(args, "piece_values", [])))
    return given


def recipe_label(recipe: str, repo: Path) -> str:
    """How a results file names the recipe (a shipped name resolved to its file): its path inside ``repo`` when it
    lies there (``runs/zoo.toml``), else as given, so a recorded table names no machine's folders."""
    label = in_repo(recipe_path(recipe).resolve(), repo)
    return str(recipe) if Path(label).is_absolute() else label
