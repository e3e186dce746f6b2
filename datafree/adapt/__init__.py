"""The preset's automatic choices: settings derived from the teacher and the student, never set per pair by hand.

A recipe names its rules in ``train.adapt`` (the default preset lists ``short_run``: docs/recipes.md). Before
step 0 each rule looks at the two networks and the recipe; where it applies, it returns the recipe changed and one
line saying what it changed and why. The run prints those lines and records them in results.json (``adapted``) and
report.md; its config.json holds the recipe as it ran, with ``train.adapt`` emptied, so running that file again
changes nothing twice. A rule reads the recipe in one of two phases: ``"networks"`` (as written, before anything
is timed) or ``"plan"`` (after a ``train.max_minutes`` budget has set ``train.steps``: the rules that depend on the
run's length). A new rule is one file with ``@register_adaptation("name")`` plus its import line below, and its row
in docs/recipes.md ("How the default adapts to the networks").
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


PHASES = ("networks", "plan")


class Adaptation:
    """One rule: ``reason(teacher, student, config)`` says why it applies ("" where it does not), ``apply(config)``
    returns the recipe changed and what changed ("" where the recipe has nothing for the rule to change).
    ``phase``: when the run asks it (module docstring)."""

    phase = "networks"

    def reason(self, teacher: nn.Module, student: nn.Module, config: Config) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, config: Config) -> tuple[Config, str]:  # pragma: no cover - abstract
        raise NotImplementedError


def check_adaptations(names: list[str]) -> None:
    """Every name in ``train.adapt`` is a registered rule: a ConfigError listing them otherwise (before any file)."""
    unknown = [name for name in names if name not in ADAPTATIONS.names()]
    if unknown:
        raise ConfigError(f"train.adapt lists {unknown}, which are not rules; the rules are {ADAPTATIONS.names()} "
                          "(datafree/adapt/); [] turns them all off")  # fmt: skip


def adapt(config: Config, teacher: nn.Module, student: nn.Module,
          phase: str = "networks") -> tuple[Config, list[str]]:  # fmt: skip
    """The recipe after its ``train.adapt`` rules of ``phase`` looked at ``teacher``, ``student`` and the recipe
    (neither network is changed; an earlier phase's rules still listed are asked too), with those rules taken off
    ``train.adapt`` (the last phase, ``"plan"``, leaves it empty); and one line per rule that changed it."""
    check_adaptations(config.train.adapt)
    if phase not in PHASES:
        raise ValueError(f"phase = {phase!r}: one of {PHASES}")
    lines, later = [], []
    for name in config.train.adapt:
        rule = ADAPTATIONS.create(name)
        if PHASES.index(rule.phase) > PHASES.index(phase):
            later.append(name)
        else:  # this phase's rules, and an earlier phase's still listed (a caller that skipped it): asked now
            why = rule.reason(teacher, student, config)
            if why:
                config, what = rule.apply(config)
                if what:
                    lines.append(f"{what}: {why} ({name})")
    return dataclasses.replace(config, train=dataclasses.replace(config.train, adapt=later)), lines


from datafree.adapt import no_conv_student, no_norm_student, short_run  # noqa: E402,F401  (registers the rules)
