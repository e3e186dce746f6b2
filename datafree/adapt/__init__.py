"""The preset's automatic choices: settings derived from the teacher and the student, never set per pair by hand.

A recipe names its rules in ``train.adapt`` (no preset lists one yet: docs/recipes.md). Before a run starts,
each rule looks at the two networks; where it applies, it returns the recipe changed and one line saying what it
changed and why. The run prints those lines and records them in results.json (``adapted``) and report.md; its
config.json holds the recipe as it ran, with ``train.adapt`` emptied, so running that file again changes nothing
twice. A new rule is one file with ``@register_adaptation("name")`` plus its import line below, and its row in
docs/recipes.md ("How the default adapts to the networks").
"""

from __future__ import annotations

import dataclasses

from torch import nn

from datafree.config import Config, ConfigError
from datafree.registry import Registry

ADAPTATIONS = Registry("adaptation", "adaptations")


def register_adaptation(name: str):
    """Class decorator: ``@register_adaptation("no_conv_student")`` makes a rule a recipe may list in train.adapt."""
    return ADAPTATIONS.register(name)


class Adaptation:
    """One rule: ``reason(teacher, student)`` says why it applies ("" where it does not), ``apply(config)`` returns
    the recipe changed and what changed ("" where the recipe has nothing for the rule to change)."""

    def reason(self, teacher: nn.Module, student: nn.Module) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, config: Config) -> tuple[Config, str]:  # pragma: no cover - abstract
        raise NotImplementedError


def check_adaptations(names: list[str]) -> None:
    """Every name in ``train.adapt`` is a registered rule: a ConfigError listing them otherwise (before any file)."""
    unknown = [name for name in names if name not in ADAPTATIONS.names()]
    if unknown:
        raise ConfigError(f"train.adapt lists {unknown}, which are not rules; the rules are {ADAPTATIONS.names()} "
                          "(datafree/adapt/); [] turns them all off")  # fmt: skip


def adapt(config: Config, teacher: nn.Module, student: nn.Module) -> tuple[Config, list[str]]:
    """The recipe after its ``train.adapt`` rules looked at ``teacher`` and ``student`` (neither is changed), with
    ``train.adapt`` emptied; and one line per rule that changed it."""
    check_adaptations(config.train.adapt)
    lines = []
    for name in config.train.adapt:
        rule = ADAPTATIONS.create(name)
        why = rule.reason(teacher, student)
        if why:
            config, what = rule.apply(config)
            if what:
                lines.append(f"{what}: {why} ({name})")
    return dataclasses.replace(config, train=dataclasses.replace(config.train, adapt=[])), lines


from datafree.adapt import no_conv_student, no_norm_student  # noqa: E402,F401  (registers the rules)
