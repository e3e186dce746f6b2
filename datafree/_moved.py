"""Old module paths of modules that moved into packages, kept importable: ``import datafree.checkpoint`` (and
``from datafree.feature_stats import record_teacher_stats``) gives the module at its new place,
``datafree.io.checkpoint`` (``datafree.nets.feature_stats``): the same module object, so patching one patches both.
A finder on ``sys.meta_path`` that answers only for these names; nothing is imported until a name is asked for."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# old name -> new name, by the folder each went to (docs/extending.md: the layout)
MOVED: dict[str, str] = {
    **{f"datafree.{m}": f"datafree.config.{m}" for m in ("presets", "overrides", "spellings", "smoke")},
    **{f"datafree.{m}": f"datafree.io.{m}" for m in ("checkpoint", "trainstate", "results", "runlog", "viz")},
    **{f"datafree.{m}": f"datafree.nets.{m}"
       for m in ("netcheck", "fold", "features", "feature_stats", "flops", "spec", "evaluate")},  # fmt: skip
    **{f"datafree.{m}": f"datafree.ship.{m}" for m in ("export", "deploy", "model_card")},
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)  # the module itself, registered under the old name too

    def exec_module(self, module) -> None:  # already executed at its new place
        pass


class MovedModules(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())
