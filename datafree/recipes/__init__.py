"""The shipped recipes, by name: ``datafree train --recipe fmnist`` works from any folder after ``pip install``.

The files are the repository's ``runs/*.toml`` (linked here, so one copy is edited; a wheel holds their text).
:func:`recipe_path` takes a name (``fmnist``) or a path to any TOML file (``runs/fmnist.toml``, ``my.toml``).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def list_recipes() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(p.stem for p in HERE.glob("*.toml"))


def recipe_path(recipe: str | Path) -> Path:
    """A recipe file: ``recipe`` itself when it is an existing file, else the shipped recipe of that name.

    Raises FileNotFoundError naming the shipped recipes when it is neither."""
    path = Path(recipe)
    if path.is_file():
        return path
    name = path.name.removesuffix(".toml")
    shipped = HERE / f"{name}.toml"
    if shipped.is_file() and (path.parent == Path(".") or path.parent.name == "runs"):
        return shipped  # a bare name, or runs/<name>.toml asked for outside the repository
    raise FileNotFoundError(f"recipe {str(recipe)!r} is neither a file nor a shipped recipe; shipped: "
                            f"{', '.join(list_recipes())} (`datafree recipes` lists them)")
