import argparse
from pathlib import Path

import pytest

from datafree.config import Config, ConfigError, add_override_arguments, apply_overrides, load_toml

ROOT = Path(__file__).resolve().parents[1]


def parse(*argv):
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_recipe_in_runs_loads_and_validates():
    recipes = sorted((ROOT / "runs").glob("*.toml"))
    assert recipes, "runs/ has no recipe"
    for recipe in recipes:
        config = apply_overrides(load_toml(recipe), parse())
        assert config.train.steps > 0 and config.distill


def test_cli_overrides_are_typed():
    config = apply_overrides(Config(), parse("--train.steps", "7", "--train.channels_last", "false",
                                             "--generator.lr", "0.5", "--student.milestones", "0.3,0.6",
                                             "--distill", '[{"name": "kd", "params": {"temperature": 4}}]'))  # fmt: skip
    assert config.train.steps == 7 and config.train.channels_last is False and config.generator.lr == 0.5
    assert config.student.milestones == [0.3, 0.6]
    assert config.distill[0].params == {"temperature": 4.0}


def test_bad_override_type_names_the_key():
    with pytest.raises(ConfigError, match="train.steps"):
        apply_overrides(Config(), parse("--train.steps", "many"))


def test_help_lists_every_value(capsys):
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    help_text = parser.format_help()
    for key in ("--train.steps", "--generator.bn_eps", "--synthesis.entropy_log", "--teacher.route_every"):
        assert key in help_text
